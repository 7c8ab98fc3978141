// `refinery bench embed`: a closed-loop load generator. N callers, each on
// its own channel (its own TCP connection, unless --shared-channel) and
// stub, send a call, wait for the answer, send the next, for S seconds. It
// reports what a user of the server sees: calls/s, items/s and latency
// percentiles measured at the client, errors counted by status code.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include "client/client_errors.h"
#include "client/commands.h"
#include "client/input_files.h"
#include "client/output.h"
#include "client/server_connection.h"
#include "refinery/v1/embedding.grpc.pb.h"

namespace refinery::client {
namespace {

using Clock = std::chrono::steady_clock;

// A 16x16 RGB gradient PNG: the default image input, so image benchmarks run
// without test files (the client has no image encoder).
const unsigned char kBuiltinPng[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x91, 0x68, 0x36, 0x00,
    0x00, 0x01, 0x96, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x15, 0xd1, 0x51, 0x15, 0x44, 0x21, 0x08, 0x45,
    0x51, 0x23, 0x18, 0x81, 0x08, 0x46, 0x30, 0x02, 0x11, 0x88, 0x60, 0x84, 0x13, 0xc1, 0x08, 0x46, 0x20,
    0x02, 0x11, 0x88, 0x40, 0x04, 0x22, 0xcc, 0x1b, 0xbf, 0xd9, 0xac, 0xcb, 0x75, 0x8c, 0xc1, 0x1c, 0xc8,
    0x60, 0x0d, 0xf6, 0x40, 0x07, 0x36, 0x38, 0x03, 0x06, 0x77, 0xf0, 0x06, 0x3e, 0x88, 0x41, 0x0e, 0x6a,
    0xd0, 0x83, 0x31, 0x26, 0x73, 0x22, 0x93, 0x35, 0xd9, 0x13, 0x9d, 0xd8, 0xe4, 0x4c, 0x98, 0xdc, 0xc9,
    0x9b, 0xf8, 0x24, 0x26, 0x39, 0xa9, 0x49, 0xcf, 0x0f, 0x08, 0x53, 0x10, 0x61, 0x09, 0x5b, 0x50, 0xc1,
    0x84, 0x23, 0x20, 0x5c, 0xe1, 0x09, 0x2e, 0x84, 0x90, 0x42, 0x09, 0x2d, 0x1f, 0x58, 0xcc, 0x85, 0x2c,
    0xd6, 0x62, 0x2f, 0x74, 0x61, 0x8b, 0xb3, 0x60, 0x71, 0x17, 0x6f, 0xe1, 0x8b, 0x58, 0xe4, 0xa2, 0x16,
    0xbd, 0x3e, 0xb0, 0x99, 0x1b, 0xd9, 0xac, 0xcd, 0xde, 0xe8, 0xc6, 0x36, 0x67, 0xc3, 0xe6, 0x6e, 0xde,
    0xc6, 0x37, 0xb1, 0xc9, 0x4d, 0x6d, 0x7a, 0x7f, 0x40, 0x99, 0x8a, 0x28, 0x4b, 0xd9, 0x8a, 0x2a, 0xa6,
    0x1c, 0x05, 0xe5, 0x2a, 0x4f, 0x71, 0x25, 0x94, 0x54, 0x4a, 0x69, 0xfd, 0x80, 0x31, 0x0d, 0x31, 0x96,
    0xb1, 0x0d, 0x35, 0xcc, 0x38, 0x06, 0xc6, 0x35, 0x9e, 0xe1, 0x46, 0x18, 0x69, 0x94, 0xd1, 0xf6, 0x81,
    0xc3, 0x3c, 0xc8, 0x61, 0x1d, 0xf6, 0x41, 0x0f, 0x76, 0x38, 0x07, 0x0e, 0xf7, 0xf0, 0x0e, 0x7e, 0x88,
    0x43, 0x1e, 0xea, 0xd0, 0xe7, 0x03, 0xff, 0x02, 0xbf, 0x4a, 0xbe, 0x23, 0xbf, 0xd8, 0x5f, 0x90, 0x6f,
    0xf5, 0x37, 0xfc, 0x7f, 0x17, 0x1e, 0x38, 0x04, 0x24, 0x14, 0xf4, 0xf7, 0x3d, 0xe3, 0x32, 0x2f, 0x72,
    0x59, 0x97, 0x7d, 0xd1, 0x8b, 0x5d, 0xce, 0xfd, 0x8f, 0xdf, 0xcb, 0xbb, 0xf8, 0x25, 0x2e, 0x79, 0xa9,
    0x4b, 0xdf, 0x0f, 0x3c, 0xe6, 0x43, 0x1e, 0xeb, 0xb1, 0x1f, 0xfa, 0xb0, 0xc7, 0x79, 0xff, 0xe5, 0xf7,
    0xf1, 0x1e, 0xfe, 0x88, 0x47, 0x3e, 0xea, 0xd1, 0xef, 0x03, 0xce, 0x74, 0xc4, 0x59, 0xce, 0x76, 0xd4,
    0x31, 0xe7, 0xf8, 0x3f, 0xca, 0x75, 0x9e, 0xe3, 0x4e, 0x38, 0xe9, 0x94, 0xd3, 0xfe, 0x81, 0x60, 0x06,
    0x12, 0xac, 0x60, 0x07, 0x1a, 0x58, 0x70, 0xe2, 0x1f, 0xfc, 0x06, 0x2f, 0xf0, 0x20, 0x82, 0x0c, 0x2a,
    0xe8, 0xf8, 0x40, 0x32, 0x13, 0x49, 0x56, 0xb2, 0x13, 0x4d, 0x2c, 0x39, 0xf9, 0x3f, 0xf3, 0x26, 0x2f,
    0xf1, 0x24, 0x92, 0x4c, 0x2a, 0xe9, 0xfc, 0x40, 0x31, 0x0b, 0x29, 0x56, 0xb1, 0x0b, 0x2d, 0xac, 0x38,
    0xf5, 0x2f, 0xe5, 0x16, 0xaf, 0xf0, 0x22, 0x8a, 0x2c, 0xaa, 0xe8, 0xfa, 0x40, 0x33, 0x1b, 0x69, 0x56,
    0xb3, 0x1b, 0x6d, 0xac, 0x39, 0xfd, 0xaf, 0xf0, 0x36, 0xaf, 0xf1, 0x26, 0x9a, 0x6c, 0xaa, 0xe9, 0xe6,
    0x07, 0x88, 0x02, 0x70, 0x10, 0x0b, 0x73, 0x5f, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82
};

struct BenchParams {
  std::string modality = "image";  // image | text
  int concurrency = 4;
  double duration_s = 10.0;
  std::vector<std::string> images, texts;
  int items_per_call = 1;
  std::string model;
  bool shared_channel = false;
};

// What one caller saw.
struct CallerStats {
  std::vector<double> latencies_ms;  // successful calls only
  int64_t items = 0;
  std::map<std::string, int64_t> errors;  // by status code name
  std::string first_error;
};

// One request per caller, built once: the benchmark measures the server,
// not the client's protobuf encoding. Callers start at different inputs so
// a mixed input set is spread across them.
struct Workload {
  bool text = false;
  v1::EmbedTextRequest text_request;
  v1::EmbedImageRequest image_request;
};

Workload make_workload(const BenchParams& p, const std::vector<v1::Image>& images, int caller) {
  Workload w;
  w.text = p.modality == "text";
  for (int i = 0; i < p.items_per_call; ++i) {
    const size_t k = static_cast<size_t>(caller * p.items_per_call + i);
    if (w.text) {
      w.text_request.add_texts(p.texts[k % p.texts.size()]);
    } else {
      *w.image_request.add_images() = images[k % images.size()];
    }
  }
  w.text_request.set_model(p.model);
  w.image_request.set_model(p.model);
  return w;
}

grpc::Status call_once(v1::EmbeddingService::Stub& stub, const Workload& w, double timeout_s) {
  grpc::ClientContext context;
  set_deadline(context, timeout_s);
  v1::EmbedResponse response;
  return w.text ? stub.EmbedText(&context, w.text_request, &response)
                : stub.EmbedImage(&context, w.image_request, &response);
}

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

int run_bench(const ClientOptions& options, BenchParams p) {
  if (p.modality == "text" && p.texts.empty()) p.texts = {"a photo of a cat"};
  std::vector<v1::Image> images;
  if (p.modality == "image") {
    for (const auto& path : p.images) images.push_back(read_image(path));
    if (images.empty()) {
      v1::Image builtin;
      builtin.set_data(std::string(reinterpret_cast<const char*>(kBuiltinPng), sizeof kBuiltinPng));
      builtin.set_name("builtin-16x16.png");
      images.push_back(builtin);
    }
  }

  // Warm-up: the first call may load the model; it is not measured.
  const auto shared = make_channel(options);
  {
    auto stub = v1::EmbeddingService::NewStub(shared);
    check_status(call_once(*stub, make_workload(p, images, 0), options.timeout_s), "warm-up call");
  }

  std::vector<CallerStats> stats(p.concurrency);
  std::vector<std::thread> callers;
  const auto start = Clock::now();
  const auto end = start + std::chrono::milliseconds(static_cast<int64_t>(p.duration_s * 1000));
  for (int c = 0; c < p.concurrency; ++c) {
    callers.emplace_back([&, c] {
      auto channel = p.shared_channel ? shared : make_channel(options, /*own_connection=*/true);
      auto stub = v1::EmbeddingService::NewStub(channel);
      const Workload w = make_workload(p, images, c);
      CallerStats& s = stats[c];
      while (Clock::now() < end) {
        const auto t0 = Clock::now();
        const grpc::Status status = call_once(*stub, w, options.timeout_s);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (status.ok()) {
          s.latencies_ms.push_back(ms);
          s.items += p.items_per_call;
        } else {
          // An unreachable server answers instantly; without a pause the
          // callers would spin and report millions of identical errors.
          if (status.error_code() == grpc::StatusCode::UNAVAILABLE) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          ++s.errors[grpc_code_name(status.error_code())];
          if (s.first_error.empty()) {
            s.first_error = std::string(grpc_code_name(status.error_code())) + ": " + status.error_message();
          }
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> latencies;
  int64_t items = 0, errors = 0;
  std::map<std::string, int64_t> error_codes;
  std::string first_error;
  for (const auto& s : stats) {
    latencies.insert(latencies.end(), s.latencies_ms.begin(), s.latencies_ms.end());
    items += s.items;
    for (const auto& [code, n] : s.errors) {
      error_codes[code] += n;
      errors += n;
    }
    if (first_error.empty()) first_error = s.first_error;
  }
  std::sort(latencies.begin(), latencies.end());
  const auto calls = static_cast<int64_t>(latencies.size());
  double mean = 0;
  for (double l : latencies) mean += l;
  if (calls > 0) mean /= calls;

  if (options.json) {
    nlohmann::ordered_json j = {{"modality", p.modality},
                        {"concurrency", p.concurrency},
                        {"duration_s", elapsed_s},
                        {"items_per_call", p.items_per_call},
                        {"calls", calls},
                        {"errors", errors},
                        {"error_codes", error_codes},
                        {"items", items},
                        {"calls_per_s", calls / elapsed_s},
                        {"throughput", items / elapsed_s},
                        {"p50_ms", percentile(latencies, 0.50)},
                        {"p90_ms", percentile(latencies, 0.90)},
                        {"p99_ms", percentile(latencies, 0.99)},
                        {"max_ms", latencies.empty() ? 0.0 : latencies.back()},
                        {"mean_ms", mean}};
    if (!first_error.empty()) j["first_error"] = first_error;
    print_json(j);
  } else {
    std::cout << "bench embed " << p.modality << ": " << p.concurrency << " caller(s) x " << format_fixed(elapsed_s, 1)
              << " s, " << p.items_per_call << " item(s) per call, server " << options.server << '\n'
              << "  calls    " << calls << " (" << format_fixed(calls / elapsed_s, 1) << "/s), errors " << errors << '\n'
              << "  items    " << items << " (" << format_fixed(items / elapsed_s, 1) << "/s)\n"
              << "  latency  p50 " << format_fixed(percentile(latencies, 0.50), 2) << " ms, p90 "
              << format_fixed(percentile(latencies, 0.90), 2) << " ms, p99 " << format_fixed(percentile(latencies, 0.99), 2)
              << " ms, max " << format_fixed(latencies.empty() ? 0.0 : latencies.back(), 2) << " ms, mean "
              << format_fixed(mean, 2) << " ms\n";
    for (const auto& [code, n] : error_codes) std::cout << "  " << code << " x " << n << '\n';
  }
  if (!first_error.empty()) std::cerr << "refinery: bench: first error: " << first_error << '\n';
  // Errors under load are a result to report; no successful call at all is a failure.
  return calls > 0 ? 0 : kExitFailure;
}

}  // namespace

void add_bench_command(CLI::App& app, Command& command) {
  auto* bench = app.add_subcommand("bench", "Load generators");
  bench->require_subcommand(1);
  auto* embed = bench->add_subcommand("embed", "Closed-loop embedding load: N callers for S seconds");
  auto p = std::make_shared<BenchParams>();
  embed->add_option("--modality", p->modality, "image or text")
      ->check(CLI::IsMember({"image", "text"}))
      ->capture_default_str();
  embed->add_option("--concurrency,-c", p->concurrency, "Concurrent callers")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  embed->add_option("--duration,-d", p->duration_s, "Seconds of load")->check(CLI::PositiveNumber)->capture_default_str();
  embed->add_option("--image", p->images, "Image file to send (repeatable; default: a built-in 16x16 PNG)")
      ->allow_extra_args(false);
  embed->add_option("--text", p->texts, "Text to send (repeatable; default \"a photo of a cat\")")
      ->allow_extra_args(false);
  embed->add_option("--items-per-call", p->items_per_call, "Items in each call")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  embed->add_option("--model", p->model, "NAME or NAME@VERSION (default: the server's default model)");
  embed->add_flag("--shared-channel", p->shared_channel, "All callers share one channel (one TCP connection)");
  embed->callback([&command, p] {
    command.run = [&command, p] { return run_bench(command.options, *p); };
  });
}

}  // namespace refinery::client
