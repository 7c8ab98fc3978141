// The /metrics HTTP endpoint: serves a MetricsRegistry in the Prometheus text
// format over cpp-httplib (HTTP, or HTTPS with optional client certificates),
// on its own few threads, apart from the gRPC server.
#pragma once

#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace refinery {

class MetricsRegistry;

// /metrics over TLS: the server's certificate chain and key (PEM files), and
// optionally a CA whose signature every scraper's client certificate must
// carry (mTLS). All empty: plain HTTP.
struct MetricsTlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
  bool enabled() const { return !cert_file.empty(); }
};

class MetricsHttpServer {
 public:
  // Starts listening on `listen` ("HOST:PORT"; HOST an IPv4 address, a
  // bracketed IPv6 address or a resolvable name; PORT 0 picks a free port).
  // Throws invalid_argument naming `listen` when it is malformed, cannot be
  // resolved or cannot be bound (port busy, address not local), and naming
  // the file when a TLS certificate, key or CA cannot be used.
  // `registry` must outlive the server.
  MetricsHttpServer(const MetricsRegistry& registry, const std::string& listen, const MetricsTlsOptions& tls = {});
  // Stops accepting, waits for in-flight requests.
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the real one when started with port 0).
  int port() const { return port_; }
  bool tls() const { return tls_; }
  const std::string& listen_address() const { return listen_; }

 private:
  const MetricsRegistry& registry_;
  std::string listen_;
  bool tls_ = false;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;  // runs the accept loop
  int port_ = 0;
};

}  // namespace refinery
