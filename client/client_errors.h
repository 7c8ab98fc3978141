// The two failures the client reports besides refinery::Error (a local
// problem such as an unreadable file): a usage mistake (exit 2) and a call
// the server refused (exit 1). output.cpp turns each into one stderr line.
#pragma once

#include <grpcpp/support/status.h>

#include <stdexcept>
#include <string>

namespace refinery::client {

// Flags that parse but do not make sense together.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A non-OK gRPC status. `context` (may be empty) says which part of a
// multi-call command failed, e.g. "items 64..127 of 200".
class RpcError : public std::runtime_error {
 public:
  RpcError(const grpc::Status& status, std::string context)
      : std::runtime_error(status.error_message()), status_(status), context_(std::move(context)) {}
  const grpc::Status& status() const { return status_; }
  const std::string& context() const { return context_; }

 private:
  grpc::Status status_;
  std::string context_;
};

}  // namespace refinery::client
