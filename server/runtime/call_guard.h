// Every RPC handler runs inside a CallGuard: it checks the caller's token
// against the method's role (access_control.h, when the server has tokens),
// times the call, turns any exception into a gRPC status (grpc_status.h, the
// one mapping), records the call's metrics and logs internal errors.
// Refused calls are counted like any other, by method and code
// (UNAUTHENTICATED, PERMISSION_DENIED).
#pragma once

#include <grpcpp/server_context.h>

#include <chrono>
#include <exception>

#include "server/runtime/access_control.h"
#include "server/runtime/grpc_status.h"
#include "server/runtime/log.h"
#include "server/runtime/rpc_metrics.h"

namespace refinery {

class CallGuard {
 public:
  // Either may be null: no metrics, or no access control (every caller may
  // call everything; refineryd then listens on loopback only).
  explicit CallGuard(RpcMetrics* metrics = nullptr, const AccessControl* access = nullptr)
      : metrics_(metrics), access_(access) {}

  template <typename F>
  grpc::Status operator()(const grpc::ServerContext* context, const char* method, F&& body) const {
    const auto start = std::chrono::steady_clock::now();
    grpc::Status status;
    try {
      if (access_ != nullptr) access_->authorize(*context, method);
      body();
    } catch (...) {
      status = to_grpc_status(std::current_exception());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (metrics_ != nullptr) metrics_->record_call(method, grpc_code_name(status.error_code()), seconds);
    if (status.error_code() == grpc::StatusCode::INTERNAL || status.error_code() == grpc::StatusCode::UNKNOWN) {
      log_error("%s failed: %s", method, status.error_message().c_str());
    }
    return status;
  }

 private:
  RpcMetrics* metrics_;
  const AccessControl* access_;
};

}  // namespace refinery
