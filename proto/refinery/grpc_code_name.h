// gRPC status codes by their canonical names ("INVALID_ARGUMENT"), for the
// server's metrics and logs and the client's error lines alike.
#pragma once
#include <grpcpp/support/status_code_enum.h>

namespace refinery {

const char* grpc_code_name(grpc::StatusCode code);

}  // namespace refinery
