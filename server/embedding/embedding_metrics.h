// The embedding path's metrics: per-stage latency of embedding calls
// (preprocess, queue, inference), and per forward pass the batch size,
// batches and items embedded, by modality.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "server/embedding/embedding_batcher.h"
#include "server/metrics/metrics_registry.h"

namespace refinery {

struct CallTiming;

class EmbeddingMetrics {
 public:
  explicit EmbeddingMetrics(MetricsRegistry& registry);

  void record_timing(const CallTiming& timing);
  void record_batch(const BatchStats& stats);
  // Drops the wait-budget series of (model, modality) lanes not in `live`
  // (an unloaded or removed model's): called at each scrape.
  void keep_wait_budgets(const std::set<std::pair<std::string, std::string>>& live);

 private:
  HistogramFamily& stage_seconds_;
  HistogramFamily& batch_size_;
  CounterFamily& batches_;
  CounterFamily& items_;
  GaugeFamily& wait_budget_;
  std::mutex mu_;
  std::set<std::pair<std::string, std::string>> wait_budget_shown_;  // (model, modality)
};

}  // namespace refinery
