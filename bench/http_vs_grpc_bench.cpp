// The same closed-loop embedding load over gRPC (EmbedText / EmbedImage)
// and over the HTTP API (POST /v1/embeddings), against one refineryd: N
// callers, each with its own connection, send a call, wait for the answer,
// send the next, for S seconds. Both ask for the same items, normalised.
//
//   refinery-bench-http --grpc 127.0.0.1:50051 --http 127.0.0.1:8080
//       [--concurrency 1,32] [--duration 10] [--modality text|image] [--items 1] [--json]
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "refinery/v1/embedding.grpc.pb.h"
#include "server/http_api/base64.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Result {
  std::string protocol;
  int concurrency = 0;
  double seconds = 0;
  int64_t calls = 0, errors = 0;
  std::vector<double> latencies_ms;
  std::string first_error;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

template <typename Call>
Result closed_loop(const std::string& protocol, int concurrency, double duration_s, const Call& make_caller) {
  Result r;
  r.protocol = protocol;
  r.concurrency = concurrency;
  std::vector<Result> per(concurrency);
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  const auto end = start + std::chrono::milliseconds(static_cast<int64_t>(duration_s * 1000));
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      auto call = make_caller();  // its own connection
      while (Clock::now() < end) {
        const auto t0 = Clock::now();
        std::string error = call();
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (error.empty()) {
          per[c].latencies_ms.push_back(ms);
        } else {
          ++per[c].errors;
          if (per[c].first_error.empty()) per[c].first_error = error;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& p : per) {
    r.latencies_ms.insert(r.latencies_ms.end(), p.latencies_ms.begin(), p.latencies_ms.end());
    r.errors += p.errors;
    if (r.first_error.empty()) r.first_error = p.first_error;
  }
  r.calls = static_cast<int64_t>(r.latencies_ms.size());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Embedding throughput and latency over gRPC and over the HTTP API, same load"};
  std::string grpc_address = "127.0.0.1:50051", http_address = "127.0.0.1:8080", modality = "text", model, image_file;
  std::vector<int> concurrency = {1, 32};
  double duration_s = 10;
  int items = 1;
  bool as_json = false;
  app.add_option("--grpc", grpc_address, "refineryd's gRPC address")->capture_default_str();
  app.add_option("--http", http_address, "refineryd's --http-listen address")->capture_default_str();
  app.add_option("--concurrency", concurrency, "Callers (a run per value)")->delimiter(',')->capture_default_str();
  app.add_option("--duration", duration_s, "Seconds per run")->capture_default_str();
  app.add_option("--modality", modality, "text or image")->check(CLI::IsMember({"text", "image"}))->capture_default_str();
  app.add_option("--items", items, "Items per call")->capture_default_str();
  app.add_option("--model", model, "Model (default: the server's)");
  app.add_option("--image", image_file, "Image file for --modality image (required there)");
  app.add_flag("--json", as_json, "One JSON object per run");
  CLI11_PARSE(app, argc, argv);
  std::string image_bytes;
  if (modality == "image") {
    std::ifstream in(image_file, std::ios::binary);
    if (!in) {
      std::cerr << "refinery-bench-http: --modality image needs --image FILE\n";
      return 2;
    }
    image_bytes.assign(std::istreambuf_iterator<char>(in), {});
  }

  // One request of each kind, built once: the bench measures the server.
  refinery::v1::EmbedTextRequest text_request;
  refinery::v1::EmbedImageRequest image_request;
  json body = {{"input", json::array()}};
  if (!model.empty()) body["model"] = model;
  text_request.set_model(model);
  image_request.set_model(model);
  text_request.set_normalize(true);
  image_request.set_normalize(true);
  const std::string data_url = "data:image/png;base64," + refinery::base64_encode(image_bytes);
  for (int i = 0; i < items; ++i) {
    if (modality == "text") {
      const std::string text = "a photo of a cat, number " + std::to_string(i);
      text_request.add_texts(text);
      body["input"].push_back(text);
    } else {
      auto* image = image_request.add_images();
      image->set_data(image_bytes);
      body["input"].push_back({{"type", "image"}, {"image", data_url}});
    }
  }
  const std::string http_body = body.dump();
  const auto colon = http_address.rfind(':');
  const std::string http_host = http_address.substr(0, colon);
  const int http_port = std::stoi(http_address.substr(colon + 1));

  auto grpc_caller = [&] {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);  // a connection of its own
    args.SetMaxReceiveMessageSize(64 << 20);
    auto stub = refinery::v1::EmbeddingService::NewStub(
        grpc::CreateCustomChannel(grpc_address, grpc::InsecureChannelCredentials(), args));
    return [&, stub = std::shared_ptr<refinery::v1::EmbeddingService::Stub>(std::move(stub))]() -> std::string {
      grpc::ClientContext ctx;
      refinery::v1::EmbedResponse out;
      const grpc::Status s = modality == "text" ? stub->EmbedText(&ctx, text_request, &out)
                                                : stub->EmbedImage(&ctx, image_request, &out);
      return s.ok() ? "" : s.error_message();
    };
  };
  auto http_caller = [&] {
    auto client = std::make_shared<httplib::Client>(http_host, http_port);
    client->set_keep_alive(true);
    client->set_tcp_nodelay(true);  // as HTTP client libraries do (urllib3, Go's net/http)
    client->set_read_timeout(120, 0);
    return [&, client]() -> std::string {
      auto r = client->Post("/v1/embeddings", http_body, "application/json");
      if (!r) return "HTTP: " + httplib::to_string(r.error());
      return r->status == 200 ? "" : "HTTP " + std::to_string(r->status) + ": " + r->body;
    };
  };

  // Warm-up: loads the model; not measured.
  if (const std::string e = grpc_caller()(); !e.empty()) {
    std::cerr << "refinery-bench-http: gRPC warm-up call failed: " << e << "\n";
    return 1;
  }
  if (const std::string e = http_caller()(); !e.empty()) {
    std::cerr << "refinery-bench-http: HTTP warm-up call failed: " << e << "\n";
    return 1;
  }
  if (!as_json) {
    std::printf("%-5s %5s %9s %9s %9s %9s %7s   (%s, %d item(s) per call, %.0f s a run)\n", "proto", "conc", "calls/s",
                "items/s", "p50 ms", "p99 ms", "errors", modality.c_str(), items, duration_s);
  }
  for (int c : concurrency) {
    for (const std::string protocol : {"grpc", "http"}) {
      Result r = protocol == "grpc" ? closed_loop(protocol, c, duration_s, grpc_caller)
                                    : closed_loop(protocol, c, duration_s, http_caller);
      const double p50 = percentile(r.latencies_ms, 0.5), p99 = percentile(r.latencies_ms, 0.99);
      if (as_json) {
        json j = {{"protocol", protocol}, {"modality", modality},    {"concurrency", c},
                  {"items_per_call", items}, {"seconds", r.seconds}, {"calls", r.calls},
                  {"calls_per_s", r.calls / r.seconds}, {"items_per_s", r.calls * items / r.seconds},
                  {"p50_ms", p50}, {"p99_ms", p99}, {"errors", r.errors}};
        if (!r.first_error.empty()) j["first_error"] = r.first_error;
        std::cout << j.dump() << std::endl;
      } else {
        std::printf("%-5s %5d %9.1f %9.1f %9.2f %9.2f %7lld%s\n", protocol.c_str(), c, r.calls / r.seconds,
                    r.calls * items / r.seconds, p50, p99, static_cast<long long>(r.errors),
                    r.first_error.empty() ? "" : ("  first error: " + r.first_error).c_str());
      }
    }
  }
  return 0;
}
