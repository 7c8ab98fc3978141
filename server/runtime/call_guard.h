// Every RPC handler runs inside `guarded`: it times the call, turns any
// exception into a gRPC status (grpc_status.h, the one mapping), records the
// call's metrics and logs internal errors.
#pragma once

#include <grpcpp/server_context.h>

#include <chrono>
#include <exception>

#include "server/runtime/grpc_status.h"
#include "server/runtime/log.h"
#include "server/runtime/rpc_metrics.h"

namespace refinery {

template <typename F>
grpc::Status guarded(RpcMetrics* metrics, const char* method, F&& body) {
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status;
  try {
    body();
  } catch (...) {
    status = to_grpc_status(std::current_exception());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (metrics != nullptr) metrics->record_call(method, grpc_code_name(status.error_code()), seconds);
  if (status.error_code() == grpc::StatusCode::INTERNAL || status.error_code() == grpc::StatusCode::UNKNOWN) {
    log_error("%s failed: %s", method, status.error_message().c_str());
  }
  return status;
}

}  // namespace refinery
