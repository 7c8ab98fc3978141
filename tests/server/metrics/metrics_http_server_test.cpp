#include "server/metrics/metrics_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/base/error.h"
#include "server/metrics/metrics_registry.h"

namespace refinery {
namespace {

struct HttpResponse {
  std::string status_line;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
};

// Closes a descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Sends `request` verbatim to 127.0.0.1:port over a plain TCP socket and reads
// until the server closes the connection, like Prometheus would see it.
HttpResponse http_exchange(int port, const std::string& request) {
  Fd sock(socket(AF_INET, SOCK_STREAM, 0));
  if (sock.fd < 0) throw std::runtime_error("socket() failed");
  timeval timeout{5, 0};  // a hung server fails the test instead of hanging it
  setsockopt(sock.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(sock.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(sock.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
  }
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(sock.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error("send failed");
    sent += static_cast<std::size_t>(n);
  }
  std::string raw;
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(sock.fd, buf, sizeof(buf), 0);
    if (n < 0) throw std::runtime_error("recv failed or timed out after " + std::to_string(raw.size()) + " bytes");
    if (n == 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }

  HttpResponse response;
  const auto header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos) throw std::runtime_error("no header end in response:\n" + raw);
  response.body = raw.substr(header_end + 4);
  const std::string head = raw.substr(0, header_end);
  std::size_t line_start = 0;
  for (bool first = true; line_start <= head.size(); first = false) {
    auto line_end = head.find("\r\n", line_start);
    if (line_end == std::string::npos) line_end = head.size();
    const std::string line = head.substr(line_start, line_end - line_start);
    line_start = line_end + 2;
    if (first) {
      response.status_line = line;
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    response.headers[name] = value;
  }
  return response;
}

HttpResponse http_get(int port, const std::string& path, const std::string& method = "GET") {
  return http_exchange(port, method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: metrics-test\r\n" +
                                 "Accept: text/plain\r\nConnection: close\r\n\r\n");
}

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.counter("refinery_requests_total", "Requests handled.", {"method"}).with({"EmbedText"}).Increment(3);
    registry_.gauge("refinery_queue_depth", "Requests waiting.").with().Set(2);
  }
  MetricsRegistry registry_;
};

TEST_F(MetricsHttpServerTest, ServesMetricsOnAFreePort) {
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  ASSERT_GT(server.port(), 0);
  const HttpResponse response = http_get(server.port(), "/metrics");
  EXPECT_EQ(response.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(response.headers.at("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.headers.at("content-length"), std::to_string(response.body.size()));
  EXPECT_EQ(response.body,
            "# HELP refinery_queue_depth Requests waiting.\n"
            "# TYPE refinery_queue_depth gauge\n"
            "refinery_queue_depth 2\n"
            "# HELP refinery_requests_total Requests handled.\n"
            "# TYPE refinery_requests_total counter\n"
            "refinery_requests_total{method=\"EmbedText\"} 3\n");
}

TEST_F(MetricsHttpServerTest, EveryScrapeSeesFreshValues) {
  auto& depth = registry_.gauge("refinery_queue_depth", "Requests waiting.").with();
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  depth.Set(11);
  EXPECT_NE(http_get(server.port(), "/metrics").body.find("refinery_queue_depth 11\n"), std::string::npos);
  depth.Set(12);
  EXPECT_NE(http_get(server.port(), "/metrics").body.find("refinery_queue_depth 12\n"), std::string::npos);
}

TEST_F(MetricsHttpServerTest, UnknownPathIs404) {
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  const HttpResponse response = http_get(server.port(), "/metricsx");
  EXPECT_EQ(response.status_line, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(response.body.find("refinery_requests_total"), std::string::npos);
  // No document root: nothing on disk is reachable.
  EXPECT_EQ(http_get(server.port(), "/etc/passwd").status_line, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(http_get(server.port(), "/../../etc/passwd").status_line.substr(0, 12), "HTTP/1.1 404");
}

TEST_F(MetricsHttpServerTest, NonGetIs405) {
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    const HttpResponse response = http_exchange(server.port(), std::string(method) +
                                                                   " /metrics HTTP/1.1\r\nHost: x\r\n"
                                                                   "Content-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(response.status_line, "HTTP/1.1 405 Method Not Allowed") << method;
    EXPECT_EQ(response.headers.at("allow"), "GET, HEAD") << method;
  }
}

TEST_F(MetricsHttpServerTest, HeadHasHeadersButNoBody) {
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  const HttpResponse response = http_get(server.port(), "/metrics", "HEAD");
  EXPECT_EQ(response.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(response.headers.at("content-type"), MetricsRegistry::kContentType);
  EXPECT_EQ(response.body, "");
}

TEST_F(MetricsHttpServerTest, IndexPageLinksToMetrics) {
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  const HttpResponse response = http_get(server.port(), "/");
  EXPECT_EQ(response.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(response.headers.at("content-type").rfind("text/html", 0), 0u);
  EXPECT_NE(response.body.find("href=\"/metrics\""), std::string::npos) << response.body;
}

TEST_F(MetricsHttpServerTest, FailingCollectorGives500) {
  registry_.add_collector([] { throw internal_error("job store unreadable"); });
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  const HttpResponse response = http_get(server.port(), "/metrics");
  EXPECT_EQ(response.status_line, "HTTP/1.1 500 Internal Server Error");
  EXPECT_NE(response.body.find("job store unreadable"), std::string::npos) << response.body;
  // The server survives and still answers.
  EXPECT_EQ(http_get(server.port(), "/").status_line, "HTTP/1.1 200 OK");
}

TEST_F(MetricsHttpServerTest, ServesConcurrentScrapes) {
  MetricsHttpServer server(registry_, "127.0.0.1:0");
  std::vector<std::thread> clients;
  std::vector<std::string> statuses(8);
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    clients.emplace_back([&, i] { statuses[i] = http_get(server.port(), "/metrics").status_line; });
  }
  for (auto& client : clients) client.join();
  for (const auto& status : statuses) EXPECT_EQ(status, "HTTP/1.1 200 OK");
}

TEST_F(MetricsHttpServerTest, BusyPortErrorNamesTheAddress) {
  // Hold a listening socket on a kernel-chosen port, then ask for that port.
  Fd holder(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_GE(holder.fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(holder.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(holder.fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(holder.fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string listen_address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  try {
    MetricsHttpServer server(registry_, listen_address);
    FAIL() << "expected " << listen_address << " to be busy";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string message = e.what();
    EXPECT_NE(message.find(listen_address), std::string::npos) << message;
    EXPECT_NE(message.find("in use"), std::string::npos) << message;
  }
}

TEST_F(MetricsHttpServerTest, MalformedAddressesAreRejected) {
  for (const std::string bad : {"9464", "127.0.0.1", "127.0.0.1:", ":9464", "127.0.0.1:65536", "127.0.0.1:12ab",
                                "127.0.0.1:9464s", "127.0.0.1:1,127.0.0.1:2", "::1:9464", "no-such-host.invalid:9464",
                                "1.2.3.4:0"}) {
    try {
      MetricsHttpServer server(registry_, bad);
      ADD_FAILURE() << "accepted " << bad << " (port " << server.port() << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("\"" + bad + "\""), std::string::npos) << e.what();
    }
  }
}

TEST_F(MetricsHttpServerTest, HostNamesResolve) {
  MetricsHttpServer server(registry_, "localhost:0");
  EXPECT_EQ(http_get(server.port(), "/metrics").status_line, "HTTP/1.1 200 OK");
}

TEST_F(MetricsHttpServerTest, PortIsFreeAgainAfterDestruction) {
  int port = 0;
  {
    MetricsHttpServer server(registry_, "127.0.0.1:0");
    port = server.port();
    // A served request leaves a server-side TIME_WAIT connection behind,
    // which must not stop a restarted refineryd from binding the port.
    ASSERT_EQ(http_get(port, "/metrics").status_line, "HTTP/1.1 200 OK");
  }
  EXPECT_THROW(http_get(port, "/metrics"), std::runtime_error);  // really stopped
  MetricsHttpServer again(registry_, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(again.port(), port);
  EXPECT_EQ(http_get(port, "/metrics").status_line, "HTTP/1.1 200 OK");
}

TEST_F(MetricsHttpServerTest, TwoServersCoexist) {
  MetricsRegistry other;
  other.gauge("other_gauge", "Another registry.").with().Set(1);
  MetricsHttpServer a(registry_, "127.0.0.1:0");
  MetricsHttpServer b(other, "127.0.0.1:0");
  EXPECT_NE(a.port(), b.port());
  EXPECT_NE(http_get(b.port(), "/metrics").body.find("other_gauge 1\n"), std::string::npos);
  EXPECT_NE(http_get(a.port(), "/metrics").body.find("refinery_queue_depth"), std::string::npos);
}

// --- /metrics over TLS, with certificates made by openssl and scrapes by curl.

// Runs `command` under sh; its exit status.
int run(const std::string& command) {
  const int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A CA, a server certificate for 127.0.0.1 and a client certificate it
// signed, plus a rogue CA's client certificate, in a fresh folder.
class MetricsTlsTest : public MetricsHttpServerTest {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/refinery-metrics-tls-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string script = R"(set -e
cd ")" + dir_ + R"("
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"; }
ca() { key "$1.key"; openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; }
leaf() { key "$1.key"; openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"; printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext"; }
ca ca; ca rogue
leaf server ca "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client ca "extendedKeyUsage=clientAuth"
leaf intruder rogue "extendedKeyUsage=clientAuth"
)";
    FILE* f = std::fopen((dir_ + "/pki.sh").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(script.c_str(), f);
    std::fclose(f);
    ASSERT_EQ(run("bash " + dir_ + "/pki.sh > " + dir_ + "/pki.log 2>&1"), 0) << "openssl failed; see " << dir_
                                                                              << "/pki.log";
  }
  static void TearDownTestSuite() { run("rm -rf '" + dir_ + "'"); }

  static std::string file(const std::string& name) { return dir_ + "/" + name; }
  HttpTlsOptions tls(bool mutual) const {
    return {file("server.pem"), file("server.key"), mutual ? file("ca.pem") : ""};
  }
  // curl's exit status for an HTTPS GET of /metrics; the body lands in `body`.
  int curl(int port, const std::string& extra, std::string* body = nullptr) const {
    const std::string out = file("body.txt");
    const int rc = run("curl -s --noproxy '*' --max-time 5 --cacert " + file("ca.pem") + " " + extra +
                       " -o " + out + " https://127.0.0.1:" + std::to_string(port) + "/metrics");
    if (body != nullptr) {
      FILE* f = std::fopen(out.c_str(), "rb");
      body->clear();
      if (f != nullptr) {
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) body->append(buf, n);
        std::fclose(f);
      }
    }
    return rc;
  }

  static std::string dir_;
};
std::string MetricsTlsTest::dir_;

TEST_F(MetricsTlsTest, ServesOverTlsToAClientThatTrustsTheCa) {
  MetricsHttpServer server(registry_, "127.0.0.1:0", tls(/*mutual=*/false));
  EXPECT_TRUE(server.tls());
  std::string body;
  ASSERT_EQ(curl(server.port(), "", &body), 0);
  EXPECT_NE(body.find("refinery_requests_total{method=\"EmbedText\"} 3\n"), std::string::npos) << body;
  // Not in clear text: a plain HTTP request gets no HTTP answer.
  EXPECT_THROW(http_get(server.port(), "/metrics"), std::runtime_error);
  // A client that does not trust the CA refuses the server (curl 60: peer certificate).
  EXPECT_EQ(run("curl -s --noproxy '*' --max-time 5 -o /dev/null https://127.0.0.1:" + std::to_string(server.port()) +
                "/metrics"),
            60);
}

TEST_F(MetricsTlsTest, MutualTlsServesOnlyClientsWithACertificateTheCaSigned) {
  MetricsHttpServer server(registry_, "127.0.0.1:0", tls(/*mutual=*/true));
  std::string body;
  EXPECT_EQ(curl(server.port(), "--cert " + file("client.pem") + " --key " + file("client.key"), &body), 0);
  EXPECT_NE(body.find("refinery_queue_depth 2\n"), std::string::npos) << body;
  EXPECT_NE(curl(server.port(), "", &body), 0) << "served a client without a certificate: " << body;
  EXPECT_NE(curl(server.port(), "--cert " + file("intruder.pem") + " --key " + file("intruder.key"), &body), 0)
      << "served a client the CA did not sign: " << body;
  // Refused handshakes do not take the server down.
  EXPECT_EQ(curl(server.port(), "--cert " + file("client.pem") + " --key " + file("client.key")), 0);
}

TEST_F(MetricsTlsTest, UnusableFilesAreNamedInTheError) {
  auto error_of = [&](const HttpTlsOptions& options) -> std::string {
    try {
      MetricsHttpServer server(registry_, "127.0.0.1:0", options);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      return e.what();
    }
    return "(no error)";
  };
  const std::string missing = file("no-such.pem");
  EXPECT_NE(error_of({missing, file("server.key"), ""}).find(missing), std::string::npos);
  EXPECT_NE(error_of({file("server.pem"), missing, ""}).find(missing), std::string::npos);
  const std::string mismatch = error_of({file("server.pem"), file("client.key"), ""});
  EXPECT_NE(mismatch.find("does not match"), std::string::npos) << mismatch;
  EXPECT_NE(mismatch.find(file("client.key")), std::string::npos) << mismatch;
  EXPECT_NE(error_of({file("server.pem"), file("server.key"), missing}).find(missing), std::string::npos);
  EXPECT_NE(error_of({file("server.pem"), "", ""}).find("--tls-key"), std::string::npos);
}

}  // namespace
}  // namespace refinery
