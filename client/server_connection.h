// One gRPC channel to refineryd plus the per-call settings of ClientOptions.
// Every verb talks to the server through it, so deadlines, message limits and
// error wrapping are decided here once.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <string>

#include "client/client_options.h"

namespace refinery::client {

// A channel to `options.server` with no message-size limits: embeddings of a
// large batch easily pass gRPC's 4 MiB default receive limit. TLS when the
// options ask for it; every call carries the token, if any. With
// `own_connection` the channel does not share its TCP connection with other
// channels (the benchmark uses it to spread load over connections).
std::shared_ptr<grpc::Channel> make_channel(const ClientOptions& options, bool own_connection = false);

class ServerConnection {
 public:
  explicit ServerConnection(const ClientOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& address() const { return options_.server; }
  const ClientOptions& options() const { return options_; }

  // A fresh context carrying the --timeout deadline.
  std::unique_ptr<grpc::ClientContext> context() const;

 private:
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Sets the --timeout deadline on `context` (0 = none).
void set_deadline(grpc::ClientContext& context, double timeout_s);

// Throws RpcError unless `status` is OK; `context` names the part of the
// command that failed (empty when the command is a single call).
void check_status(const grpc::Status& status, const std::string& context = "");

}  // namespace refinery::client
