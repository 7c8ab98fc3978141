// The /metrics HTTP endpoint: serves a MetricsRegistry in the Prometheus text
// format over cpp-httplib (HTTP, or HTTPS with optional client certificates),
// on its own few threads, apart from the gRPC server.
#pragma once

#include <memory>
#include <string>

#include "server/http/http_listener.h"

namespace refinery {

class MetricsRegistry;

class MetricsHttpServer {
 public:
  // Starts serving on `listen` (see HttpListener for the address forms and
  // the errors); HTTPS when `tls` is enabled. `registry` must outlive the
  // server.
  MetricsHttpServer(const MetricsRegistry& registry, const std::string& listen, const HttpTlsOptions& tls = {});
  // Stops accepting, waits for in-flight requests.
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the real one when started with port 0).
  int port() const { return listener_->port(); }
  bool tls() const { return listener_->tls(); }
  const std::string& listen_address() const { return listener_->listen_address(); }

 private:
  const MetricsRegistry& registry_;
  std::unique_ptr<HttpListener> listener_;
};

}  // namespace refinery
