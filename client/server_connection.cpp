#include "client/server_connection.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <chrono>

#include "client/client_errors.h"

namespace refinery::client {

std::shared_ptr<grpc::Channel> make_channel(const std::string& address, bool own_connection) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

ServerConnection::ServerConnection(const ClientOptions& options)
    : options_(options), channel_(make_channel(options.server)) {}

std::unique_ptr<grpc::ClientContext> ServerConnection::context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  set_deadline(*context, options_.timeout_s);
  return context;
}

void set_deadline(grpc::ClientContext& context, double timeout_s) {
  if (timeout_s <= 0) return;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
}

void check_status(const grpc::Status& status, const std::string& context) {
  if (!status.ok()) throw RpcError(status, context);
}

}  // namespace refinery::client
