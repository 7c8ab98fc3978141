// The one place where errors become gRPC statuses, and gRPC statuses HTTP
// ones. refinery::Error carries its code; LibTorch and other exceptions are
// internal errors.
#pragma once

#include <grpcpp/support/status.h>

#include <exception>

#include "core/base/error.h"
#include "refinery/grpc_code_name.h"

namespace refinery {

grpc::StatusCode to_grpc_code(ErrorCode code);
// Maps the exception in `error` to a status whose message names the culprit.
grpc::Status to_grpc_status(const std::exception_ptr& error);

// The HTTP status of a gRPC code, as Google's APIs map them
// (google.rpc.Code): INVALID_ARGUMENT and FAILED_PRECONDITION 400,
// UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS
// and ABORTED 409, RESOURCE_EXHAUSTED 429, CANCELLED 499, UNIMPLEMENTED 501,
// UNAVAILABLE 503, DEADLINE_EXCEEDED 504, the rest 500.
int http_status(grpc::StatusCode code);
// The error "type" of an HTTP error body, in the words OpenAI-compatible
// clients know: invalid_request_error, authentication_error,
// permission_error, not_found_error, rate_limit_error, server_error.
const char* http_error_type(grpc::StatusCode code);

}  // namespace refinery
