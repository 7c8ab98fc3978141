#include "server/metrics/metrics_http_server.h"

#include <httplib.h>

#include <exception>
#include <string>

#include "server/metrics/metrics_registry.h"

namespace refinery {

namespace {

constexpr const char* kIndexPage =
    "<!DOCTYPE html>\n<html><head><title>refineryd metrics</title></head>\n"
    "<body><h1>refineryd</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

void answer(httplib::Response& res, int status, const std::string& body, const char* content_type) {
  res.status = status;
  res.set_content(body, content_type);
  res.set_header("Cache-Control", "no-store");  // a scrape must never come from a cache
  res.set_header("X-Content-Type-Options", "nosniff");
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(const MetricsRegistry& registry, const std::string& listen,
                                     const HttpTlsOptions& tls)
    : registry_(registry) {
  HttpListenerOptions options;
  options.name = "metrics";
  // Scrapes are rare and short: three workers, and a slow client cannot pin
  // one for long. One request per connection, as Prometheus scrapes.
  options.threads = 3;
  options.keep_alive_requests = 1;
  options.max_body_bytes = 64 * 1024;
  options.tls = tls;
  listener_ = std::make_unique<HttpListener>(listen, options, [this](httplib::Server& s) {
    // Every request is answered here, before cpp-httplib's routing: no file
    // serving, and every method and path gets a deliberate answer.
    s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const bool readable = req.method == "GET" || req.method == "HEAD";
      const char* text = "text/plain; charset=utf-8";
      try {
        if (req.path == "/metrics" || req.path == "/") {
          if (!readable) {
            answer(res, 405, "Only GET and HEAD.\n", text);
            res.set_header("Allow", "GET, HEAD");
          } else if (req.path == "/metrics") {
            answer(res, 200, registry_.serialize(), MetricsRegistry::kContentType);
          } else {
            answer(res, 200, kIndexPage, "text/html; charset=utf-8");
          }
        } else {
          answer(res, 404, "Not found: " + req.path + " (try /metrics)\n", text);
        }
      } catch (const std::exception& e) {
        // A failing collector: 500, so Prometheus marks the target down.
        answer(res, 500, std::string("metrics collection failed: ") + e.what() + "\n", text);
      }
      return httplib::Server::HandlerResponse::Handled;
    });
  });
}

MetricsHttpServer::~MetricsHttpServer() = default;

}  // namespace refinery
