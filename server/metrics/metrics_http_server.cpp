#include "server/metrics/metrics_http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <civetweb.h>
#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "core/base/error.h"
#include "server/metrics/metrics_registry.h"

// Debian's civetweb starts its threads with a stack fixed at build time
// (100 KiB). glibc refuses a stack smaller than the process's static TLS,
// and LibTorch + OpenBLAS + glog need more than that (~110 KiB measured),
// so mg_start2 failed with "Cannot create threads" inside refineryd. This
// definition interposes pthread_attr_setstacksize for the process (the
// executable's symbol wins over libc's) and raises requests below a floor;
// larger requests pass through unchanged. It lives in this file because this
// object is linked wherever civetweb is used.
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  constexpr size_t kMinThreadStack = size_t{1} << 20;
  using Real = int (*)(pthread_attr_t*, size_t);
  static const Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  return real(attr, size < kMinThreadStack ? kMinThreadStack : size);
}

namespace refinery {

namespace {

// mg_init_library()/mg_exit_library() are reference counted but not thread
// safe, and civetweb leaks its globals if mg_start2() has to init them itself.
std::mutex& civetweb_library_mutex() {
  static std::mutex mutex;
  return mutex;
}

// civetweb reports why a start failed (e.g. "cannot bind to ...: 98 (Address
// already in use)") only through log_message, on the thread calling
// mg_start2; the constructor points this at a buffer for that call.
thread_local std::string* startup_log = nullptr;

constexpr const char* kIndexPage =
    "<!DOCTYPE html>\n<html><head><title>refineryd metrics</title></head>\n"
    "<body><h1>refineryd</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

[[noreturn]] void throw_bad_listen(const std::string& listen, const std::string& why) {
  throw invalid_argument("metrics listen address \"" + listen + "\": " + why);
}

// "HOST:PORT" -> civetweb's "IP:PORT" / "[IPv6]:PORT". We parse it ourselves
// so that civetweb's own suffixes ("s" for TLS, "r" for redirect, comma
// lists) can never be smuggled in, and so that host names resolve.
std::string to_civetweb_port_spec(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) throw_bad_listen(listen, "expected HOST:PORT, e.g. 127.0.0.1:9464");
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    throw_bad_listen(listen, "port \"" + port_text + "\" must be a number from 0 to 65535 (0 picks a free port)");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    throw_bad_listen(listen, "an IPv6 host must be in brackets, e.g. [::1]:9464");
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    throw_bad_listen(listen, "cannot resolve host \"" + host + "\": " + gai_strerror(rc));
  }
  // Prefer IPv4: "localhost" should mean 127.0.0.1 where IPv6 is disabled.
  const addrinfo* chosen = found;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      chosen = ai;
      break;
    }
  }
  char numeric[INET6_ADDRSTRLEN] = {};
  std::string spec;
  if (chosen->ai_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(chosen->ai_addr)->sin_addr, numeric, sizeof(numeric));
    spec = std::string(numeric) + ":" + port_text;
  } else if (chosen->ai_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(chosen->ai_addr)->sin6_addr, numeric,
              sizeof(numeric));
    spec = "[" + std::string(numeric) + "]:" + port_text;
  }
  freeaddrinfo(found);
  if (spec.empty()) throw_bad_listen(listen, "host \"" + host + "\" is neither IPv4 nor IPv6");
  if (spec.front() == '[' && mg_check_feature(MG_FEATURES_IPV6) == 0) {
    throw_bad_listen(listen, "this civetweb build has no IPv6 support");
  }
  return spec;
}

// Connects to our own listening socket and hangs up at once. Non-blocking,
// so a firewall that drops the SYN cannot stall shutdown (the caller retries).
void poke_listening_socket(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  (void)connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  close(fd);
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 500: return "Internal Server Error";
  }
  return "Unknown";
}

// RFC 9110 IMF-fixdate, built by hand: strftime's names follow the locale.
std::string http_date() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[utc.tm_wday], utc.tm_mday,
                kMonths[utc.tm_mon], utc.tm_year + 1900, utc.tm_hour, utc.tm_min, utc.tm_sec);
  return buf;
}

// Writes the whole response ourselves: civetweb's header helpers format the
// Date header with gmtime(), which is not thread safe in Debian's build
// (ThreadSanitizer flags concurrent scrapes).
int send_response(mg_connection* conn, int status, const char* content_type, const std::string& body,
                  const char* allow = nullptr) {
  const bool head_only = std::strcmp(mg_get_request_info(conn)->request_method, "HEAD") == 0;
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  head += "Date: " + http_date() + "\r\n";
  head += std::string("Content-Type: ") + content_type + "\r\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  head += "Cache-Control: no-store\r\n";  // a scrape must never come from a cache
  head += "X-Content-Type-Options: nosniff\r\n";
  if (allow != nullptr) head += std::string("Allow: ") + allow + "\r\n";
  head += "Connection: close\r\n\r\n";  // keep-alive is off; say so
  mg_write(conn, head.data(), head.size());
  if (!head_only && !body.empty()) mg_write(conn, body.data(), body.size());
  return status;
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(const MetricsRegistry& registry, const std::string& listen)
    : registry_(registry), listen_(listen) {
  const std::string port_spec = to_civetweb_port_spec(listen);

  const char* options[] = {
      "listening_ports", port_spec.c_str(),
      // Scrapes are rare and short; a slow client must not pin a thread long.
      "num_threads", "3",
      "request_timeout_ms", "10000",
      "enable_keep_alive", "no",
      "enable_directory_listing", "no",
      nullptr,
  };
  mg_callbacks callbacks{};
  // begin_request sees every request, so no path ever reaches civetweb's file
  // serving and there is no window before a handler is registered.
  callbacks.begin_request = [](mg_connection* conn) {
    return handle_request(conn, mg_get_request_info(conn)->user_data);
  };
  // Keep civetweb off stderr; during start-up its messages explain failures.
  callbacks.log_message = [](const mg_connection*, const char* message) {
    if (startup_log != nullptr && message != nullptr) {
      if (startup_log->find(message) == std::string::npos) {
        if (!startup_log->empty()) *startup_log += "; ";
        *startup_log += message;
      }
    }
    return 1;
  };

  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = this;
  init.configuration_options = options;
  char error_text[256] = {};
  unsigned error_code = 0;
  mg_error_data error{};
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);

  std::string log;
  std::lock_guard<std::mutex> lock(civetweb_library_mutex());
  mg_init_library(0);
  startup_log = &log;
  context_ = mg_start2(&init, &error);
  startup_log = nullptr;
  if (context_ == nullptr) {
    mg_exit_library();
    std::string why = error_text[0] != '\0' ? error_text : "unknown civetweb error";
    // The log holds the cause ("cannot bind to ...: 98 (Address already in
    // use)") and usually repeats error_text, which is generic.
    if (!log.empty()) why = log;
    throw_bad_listen(listen, "cannot start the metrics HTTP server: " + why);
  }
  mg_server_port ports[4] = {};
  const int count = mg_get_server_ports(context_, 4, ports);
  if (count < 1 || ports[0].port <= 0) {
    mg_stop(context_);
    mg_exit_library();
    throw_bad_listen(listen, "civetweb started but reports no bound port");
  }
  port_ = ports[0].port;
  // Where the destructor can reach the listener; IPv4 only (our civetweb has
  // no IPv6), and a wildcard listener is reachable on loopback.
  wake_host_ = port_spec.substr(0, port_spec.rfind(':'));
  if (wake_host_ == "0.0.0.0") wake_host_ = "127.0.0.1";
}

MetricsHttpServer::~MetricsHttpServer() {
  std::lock_guard<std::mutex> lock(civetweb_library_mutex());
  // civetweb's master thread polls the listening socket with a fixed 2 s
  // timeout (SOCKET_TIMEOUT_QUANTUM, compiled into Debian's build) and only
  // then notices the stop flag; a connection wakes it at once, which turns a
  // 2 s shutdown into milliseconds.
  std::atomic<bool> stopped{false};
  std::thread stopper([this, &stopped] {
    mg_stop(context_);  // joins the worker threads: no handler runs after this
    stopped = true;
  });
  while (!stopped) {
    poke_listening_socket(wake_host_, port_);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stopper.join();
  mg_exit_library();
}

int MetricsHttpServer::handle_request(mg_connection* conn, void* self) {
  const auto* server = static_cast<const MetricsHttpServer*>(self);
  const mg_request_info* request = mg_get_request_info(conn);
  const std::string path = request->local_uri != nullptr ? request->local_uri : "";
  const std::string method = request->request_method != nullptr ? request->request_method : "";
  const bool readable = method == "GET" || method == "HEAD";
  try {
    if (path == "/metrics") {
      if (!readable) return send_response(conn, 405, "text/plain; charset=utf-8", "Only GET and HEAD.\n", "GET, HEAD");
      return send_response(conn, 200, MetricsRegistry::kContentType, server->registry_.serialize());
    }
    if (path == "/") {
      if (!readable) return send_response(conn, 405, "text/plain; charset=utf-8", "Only GET and HEAD.\n", "GET, HEAD");
      return send_response(conn, 200, "text/html; charset=utf-8", kIndexPage);
    }
    return send_response(conn, 404, "text/plain; charset=utf-8", "Not found: " + path + " (try /metrics)\n");
  } catch (const std::exception& e) {
    // A failing collector: answer 500 so Prometheus marks the target down,
    // and never let an exception unwind through civetweb's C frames.
    return send_response(conn, 500, "text/plain; charset=utf-8",
                         std::string("metrics collection failed: ") + e.what() + "\n");
  }
}

}  // namespace refinery
