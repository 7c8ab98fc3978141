// The server's metrics, defined in one place: call counts and latencies by
// method and status, per-stage latency, batch sizes, queue depths, models
// loaded and their memory, index sizes, build info and process metrics.
#pragma once

#include <string>

#include "server/embedding_batcher.h"
#include "server/metrics_registry.h"

namespace refinery {

struct CallTiming;

class ServerMetrics {
 public:
  explicit ServerMetrics(MetricsRegistry& registry);

  void record_call(const std::string& method, const std::string& code, double seconds);
  void record_timing(const CallTiming& timing);
  void record_batch(const BatchStats& stats);
  MetricsRegistry& registry() { return registry_; }

 private:
  MetricsRegistry& registry_;
  CounterFamily& calls_;
  HistogramFamily& call_seconds_;
  HistogramFamily& stage_seconds_;
  HistogramFamily& batch_size_;
  CounterFamily& batches_;
  CounterFamily& items_;
};

}  // namespace refinery
