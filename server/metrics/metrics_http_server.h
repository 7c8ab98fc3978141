// The /metrics HTTP endpoint: serves a MetricsRegistry in the Prometheus text
// format over civetweb, on its own few threads, apart from the gRPC server.
#pragma once

#include <string>

struct mg_context;
struct mg_connection;

namespace refinery {

class MetricsRegistry;

class MetricsHttpServer {
 public:
  // Starts listening on `listen` ("HOST:PORT"; HOST an IPv4 address, a
  // bracketed IPv6 address or a resolvable name; PORT 0 picks a free port).
  // Throws invalid_argument naming `listen` when it is malformed, cannot be
  // resolved or cannot be bound (port busy, address not local).
  // `registry` must outlive the server.
  MetricsHttpServer(const MetricsRegistry& registry, const std::string& listen);
  // Stops accepting, waits for in-flight requests, releases civetweb.
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the real one when started with port 0).
  int port() const { return port_; }
  const std::string& listen_address() const { return listen_; }

 private:
  static int handle_request(mg_connection* conn, void* self);

  const MetricsRegistry& registry_;
  std::string listen_;
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::string wake_host_;  // numeric address the destructor connects to
};

}  // namespace refinery
