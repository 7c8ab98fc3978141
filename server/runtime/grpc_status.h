// The one place where errors become gRPC statuses. refinery::Error carries
// its code; LibTorch and other exceptions are internal errors.
#pragma once

#include <grpcpp/support/status.h>

#include <exception>

#include "core/base/error.h"
#include "refinery/grpc_code_name.h"

namespace refinery {

grpc::StatusCode to_grpc_code(ErrorCode code);
// Maps the exception in `error` to a status whose message names the culprit.
grpc::Status to_grpc_status(const std::exception_ptr& error);

}  // namespace refinery
