#include "server/http/http_listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509err.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/base/error.h"

namespace refinery {

namespace {

[[noreturn]] void throw_bad_listen(const std::string& name, const std::string& listen, const std::string& why) {
  throw invalid_argument(name + " listen address \"" + listen + "\": " + why);
}

struct ListenAddress {
  std::string host;  // numeric: an IPv4 or IPv6 address, no brackets
  int port = 0;
  int family = AF_INET;
};

// "HOST:PORT" -> a numeric host and a port. We parse and resolve it
// ourselves so that lists, suffixes or a missing port are refused by name,
// and so that "localhost" means 127.0.0.1 where IPv6 is off.
ListenAddress parse_listen_address(const std::string& name, const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) throw_bad_listen(name, listen, "expected HOST:PORT, e.g. 127.0.0.1:9464");
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    throw_bad_listen(name, listen, "port \"" + port_text + "\" must be a number from 0 to 65535 (0 picks a free port)");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    throw_bad_listen(name, listen, "an IPv6 host must be in brackets, e.g. [::1]:9464");
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    throw_bad_listen(name, listen, "cannot resolve host \"" + host + "\": " + gai_strerror(rc));
  }
  const addrinfo* chosen = found;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      chosen = ai;
      break;
    }
  }
  char numeric[INET6_ADDRSTRLEN] = {};
  ListenAddress out;
  out.port = std::stoi(port_text);
  out.family = chosen->ai_family;
  if (chosen->ai_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(chosen->ai_addr)->sin_addr, numeric, sizeof(numeric));
  } else if (chosen->ai_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(chosen->ai_addr)->sin6_addr, numeric,
              sizeof(numeric));
  }
  freeaddrinfo(found);
  if (numeric[0] == '\0') throw_bad_listen(name, listen, "host \"" + host + "\" is neither IPv4 nor IPv6");
  out.host = numeric;
  return out;
}

// Why binding `address` fails, found by trying it on a socket of our own:
// cpp-httplib reports only that it failed.
std::string bind_failure(const ListenAddress& address) {
  const int fd = socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  sockaddr_storage storage{};
  socklen_t len = 0;
  if (address.family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(address.port));
    inet_pton(AF_INET6, address.host.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(address.port));
    inet_pton(AF_INET, address.host.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  std::string why = "cannot bind";
  if (bind(fd, reinterpret_cast<const sockaddr*>(&storage), len) != 0) why += std::string(": ") + std::strerror(errno);
  close(fd);
  return why;
}

// OpenSSL's queued errors as one line, the queue emptied.
std::string openssl_errors() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// Loads the certificate chain, key and client CA into `ctx`; on failure
// sets `error` naming the file and returns false.
bool set_up_tls(SSL_CTX& ctx, const HttpTlsOptions& tls, std::string& error) {
  ERR_clear_error();
  auto fail = [&](const std::string& what) {
    error = what + ": " + openssl_errors();
    return false;
  };
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1) return fail("cannot require TLS 1.2");
  if (SSL_CTX_use_certificate_chain_file(&ctx, tls.cert_file.c_str()) != 1) {
    return fail("cannot use the certificate chain in " + tls.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(&ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      return fail("the key in " + tls.key_file + " does not match the certificate in " + tls.cert_file);
    }
    return fail("cannot use the private key in " + tls.key_file);
  }
  if (SSL_CTX_check_private_key(&ctx) != 1) {
    return fail("the key in " + tls.key_file + " does not match the certificate in " + tls.cert_file);
  }
  if (!tls.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(&ctx, tls.client_ca_file.c_str(), nullptr) != 1) {
      return fail("cannot use the client CA in " + tls.client_ca_file);
    }
    // The CA names the handshake offers, so clients pick the right certificate.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(&ctx, names);
    }
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return true;
}

}  // namespace

HttpListener::HttpListener(const std::string& listen, const HttpListenerOptions& options,
                           const std::function<void(httplib::Server&)>& routes)
    : listen_(listen), tls_(options.tls.enabled()) {
  const ListenAddress address = parse_listen_address(options.name, listen);
  const HttpTlsOptions& tls = options.tls;
  if (tls.enabled()) {
    if (tls.key_file.empty()) throw invalid_argument(options.name + " TLS: a certificate needs its key (--tls-key)");
    std::string error;
    auto server = std::make_unique<httplib::SSLServer>(
        [&](SSL_CTX& ctx) { return set_up_tls(ctx, tls, error); });
    if (!server->is_valid()) {
      throw invalid_argument(options.name + " TLS: " + (error.empty() ? openssl_errors() : error));
    }
    server_ = std::move(server);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *server_;
  const int threads = options.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_read_timeout(options.read_timeout_s, 0);
  s.set_write_timeout(options.write_timeout_s, 0);
  s.set_keep_alive_max_count(static_cast<size_t>(options.keep_alive_requests));
  s.set_payload_max_length(options.max_body_bytes);
  // cpp-httplib writes a response's headers and body separately: with
  // Nagle's algorithm on, a keep-alive client's next request waited for a
  // delayed ACK (measured: 100 ms per call at concurrency 1).
  s.set_tcp_nodelay(true);
  routes(s);

  if (address.port == 0) {
    port_ = s.bind_to_any_port(address.host);
    if (port_ <= 0) throw_bad_listen(options.name, listen, bind_failure(address));
  } else {
    if (!s.bind_to_port(address.host, address.port)) throw_bad_listen(options.name, listen, bind_failure(address));
    port_ = address.port;
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

HttpListener::~HttpListener() {
  server_->stop();  // closes the listening socket; the accept loop returns
  thread_.join();   // ... after the worker pool has finished its requests
}

}  // namespace refinery
