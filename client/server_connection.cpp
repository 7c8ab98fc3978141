#include "client/server_connection.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <grpcpp/support/client_interceptor.h>

#include <chrono>
#include <vector>

#include "client/client_errors.h"
#include "core/base/error.h"
#include "core/base/pem_file.h"

namespace refinery::client {

namespace {

// Adds `authorization: Bearer TOKEN` to every call of a channel. An
// interceptor rather than call credentials: gRPC sends call credentials only
// over TLS, and a token on a loopback channel without TLS is legitimate.
class BearerToken final : public grpc::experimental::Interceptor {
 public:
  explicit BearerToken(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new BearerToken(&header_);
  }

 private:
  std::string header_;  // lives as long as the channel, which owns the factory
};

std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const ClientOptions& o) {
  if (!o.tls && o.tls_ca.empty()) {
    if (!o.tls_cert.empty() || !o.tls_key.empty()) {
      throw invalid_argument("--tls-cert/--tls-key need TLS: give --tls-ca PEM (or --tls for the system's CAs)");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) throw invalid_argument("--tls-cert and --tls-key go together");
  grpc::SslCredentialsOptions ssl;
  if (!o.tls_ca.empty()) ssl.pem_root_certs = read_pem_file(o.tls_ca, "--tls-ca or REFINERY_TLS_CA");
  if (!o.tls_cert.empty()) {
    ssl.pem_private_key = read_pem_file(o.tls_key, "--tls-key");
    ssl.pem_cert_chain = read_pem_file(o.tls_cert, "--tls-cert");
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

std::shared_ptr<grpc::Channel> make_channel(const ClientOptions& options, bool own_connection) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  const auto credentials = channel_credentials(options);
  if (options.token.empty()) return grpc::CreateCustomChannel(options.server, credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerTokenFactory>(options.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(options.server, credentials, args,
                                                                 std::move(interceptors));
}

ServerConnection::ServerConnection(const ClientOptions& options)
    : options_(options), channel_(make_channel(options)) {}

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
