// Metrics every RPC records through `guarded` (call_guard.h): calls by
// method and status code, and latency by method.
#pragma once

#include <string>

#include "server/metrics/metrics_registry.h"

namespace refinery {

class RpcMetrics {
 public:
  explicit RpcMetrics(MetricsRegistry& registry);

  void record_call(const std::string& method, const std::string& code, double seconds);

 private:
  CounterFamily& calls_;
  HistogramFamily& call_seconds_;
};

}  // namespace refinery
