// The HTTP/JSON API: OpenAI-compatible POST /v1/embeddings, JSON mirrors of
// the gRPC methods, job events as Server-Sent Events, /openapi.json, /health
// and /ready (api_routes.h lists them).
//
// Every call goes through the server's own gRPC services over an in-process
// channel, with the caller's `Authorization` header as its metadata: the
// same token checks, roles, limits, metrics and errors as a gRPC client
// gets, and the same numbers. Errors are {"error": {"message", "type",
// "code"}} with the HTTP status of the gRPC code (grpc_status.h).
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace grpc {
class Channel;
}
namespace httplib {
class Server;
}

namespace refinery {

struct HttpApiOptions {
  int max_request_items = 1024;  // inputs of one /v1/embeddings call (--max-request-items)
  // Why the server cannot serve now ("" when it can): /ready answers 503
  // with it. Unset: always ready.
  std::function<std::string()> not_ready_reason;
};

class HttpApi {
 public:
  // `channel` reaches the server's gRPC services (Server::InProcessChannel).
  HttpApi(std::shared_ptr<grpc::Channel> channel, HttpApiOptions options);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Installs the routes and the JSON error answers on `server`.
  void install(httplib::Server& server) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace refinery
