// A gRPC call's deadline and liveness as the batcher's CallControl, so that
// calls whose deadline passed or whose client left cost no compute.
#pragma once

#include <grpcpp/server_context.h>

#include <chrono>

#include "server/embedding/embedding_batcher.h"

namespace refinery {

inline CallControl call_control(grpc::ServerContext* context) {
  CallControl c;
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    const auto left = deadline - std::chrono::system_clock::now();
    c.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
  }
  c.cancelled = [context] { return context->IsCancelled(); };
  return c;
}

}  // namespace refinery
