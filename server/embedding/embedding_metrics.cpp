#include "server/embedding/embedding_metrics.h"

#include "server/embedding/embedding_engine.h"

namespace refinery {

EmbeddingMetrics::EmbeddingMetrics(MetricsRegistry& registry)
    : stage_seconds_(registry.histogram("refinery_stage_duration_seconds",
                                        "Time embedding calls spent per stage (preprocess, queue, inference)",
                                        latency_buckets_seconds(), {"stage"})),
      batch_size_(registry.histogram("refinery_batch_size", "Items per forward pass, by modality", size_buckets(),
                                     {"modality"})),
      batches_(registry.counter("refinery_batches_total", "Forward passes run by the batchers", {"modality"})),
      items_(registry.counter("refinery_embedded_items_total", "Items embedded", {"modality"})),
      wait_budget_(registry.gauge("refinery_batch_wait_budget_seconds",
                                  "How long the next batch of a model may wait for company (a tenth of its "
                                  "measured pass time, or --max-wait-ms)",
                                  {"model", "modality"})) {}

void EmbeddingMetrics::record_timing(const CallTiming& t) {
  stage_seconds_.with({"preprocess"}).Observe(t.preprocess_ms / 1e3);
  stage_seconds_.with({"queue"}).Observe(t.queue_ms / 1e3);
  stage_seconds_.with({"inference"}).Observe(t.inference_ms / 1e3);
}

void EmbeddingMetrics::record_batch(const BatchStats& s) {
  const char* m = modality_name(s.modality);
  batch_size_.with({m}).Observe(s.items);
  batches_.with({m}).Increment();
  items_.with({m}).Increment(s.items);
  if (s.model_ref == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  wait_budget_.with({*s.model_ref, m}).Set(s.wait_budget_ms / 1e3);
  wait_budget_shown_.insert({*s.model_ref, m});
}

void EmbeddingMetrics::keep_wait_budgets(const std::set<std::pair<std::string, std::string>>& live) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = wait_budget_shown_.begin(); it != wait_budget_shown_.end();) {
    if (live.count(*it)) {
      ++it;
    } else {
      wait_budget_.remove({it->first, it->second});
      it = wait_budget_shown_.erase(it);
    }
  }
}

}  // namespace refinery
