#include "server/runtime/rpc_metrics.h"

namespace refinery {

RpcMetrics::RpcMetrics(MetricsRegistry& registry)
    : calls_(registry.counter("refinery_grpc_calls_total", "gRPC calls handled, by method and status code",
                              {"method", "code"})),
      call_seconds_(registry.histogram("refinery_grpc_call_duration_seconds", "gRPC call latency, by method",
                                       latency_buckets_seconds(), {"method"})) {}

void RpcMetrics::record_call(const std::string& method, const std::string& code, double seconds) {
  calls_.with({method, code}).Increment();
  call_seconds_.with({method}).Observe(seconds);
}

}  // namespace refinery
