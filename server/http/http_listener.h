// An HTTP (or HTTPS) listener on cpp-httplib, for the endpoints refineryd
// serves beside gRPC: /metrics and the HTTP API. It parses and binds the
// address itself, so that a bad one is refused by name; loads TLS
// certificates through OpenSSL, so that an unusable file is named; and runs
// its accept loop and a fixed pool of workers on threads of its own.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace refinery {

// TLS for an HTTP listener: the server's certificate chain and key (PEM
// files), and optionally a CA whose signature every client certificate must
// carry (mTLS). All empty: plain HTTP.
struct HttpTlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
  bool enabled() const { return !cert_file.empty(); }
};

struct HttpListenerOptions {
  std::string name = "HTTP";      // in error messages: "<name> listen address ...", "<name> TLS: ..."
  int threads = 3;                // requests served at once; each holds a worker while it runs
  int read_timeout_s = 10;        // a client that sends nothing for this long is dropped
  int write_timeout_s = 10;       // ... or that reads nothing for this long
  int keep_alive_requests = 1;    // requests per connection (1: one, then close)
  size_t max_body_bytes = 64 * 1024;
  HttpTlsOptions tls;
};

class HttpListener {
 public:
  // Calls `routes` on the server (handlers, limits) and starts listening on
  // `listen` ("HOST:PORT"; HOST an IPv4 address, a bracketed IPv6 address or
  // a resolvable name; PORT 0 picks a free port). Throws invalid_argument
  // naming `listen` when it is malformed, cannot be resolved or cannot be
  // bound (port busy, address not local), and naming the file when a TLS
  // certificate, key or CA cannot be used.
  HttpListener(const std::string& listen, const HttpListenerOptions& options,
               const std::function<void(httplib::Server&)>& routes);
  // Stops accepting, waits for in-flight requests.
  ~HttpListener();

  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // The bound port (the real one when started with port 0).
  int port() const { return port_; }
  bool tls() const { return tls_; }
  const std::string& listen_address() const { return listen_; }

 private:
  std::string listen_;
  bool tls_ = false;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;  // runs the accept loop
  int port_ = 0;
};

}  // namespace refinery
