// A hostile client and a legitimate one against a real refineryd, for
// security_e2e_test.sh: first the legitimate client alone (EmbedImage of one
// image, by N callers), then the same load while attackers send every kind
// of bad call in a loop and hold a flood of streams. Each bad call must get
// its expected status; the legitimate calls must all succeed with the very
// same embedding. Prints one JSON object with the counts and latencies.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "refinery/v1/embedding.grpc.pb.h"
#include "refinery/v1/job.grpc.pb.h"
#include "refinery/v1/model.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Args {
  std::string server, ca, cert, key, reader, trainer, image, bomb, truncated, polyglot, data_root, job;
  double seconds = 5;
  int callers = 2, attackers = 4, streams = 48;
};

Args parse(int argc, char** argv) {
  Args a;
  std::map<std::string, std::string*> text = {
      {"--server", &a.server},       {"--tls-ca", &a.ca},           {"--tls-cert", &a.cert},
      {"--tls-key", &a.key},         {"--reader", &a.reader},       {"--trainer", &a.trainer},
      {"--image", &a.image},         {"--bomb", &a.bomb},           {"--truncated", &a.truncated},
      {"--polyglot", &a.polyglot},   {"--data-root", &a.data_root}, {"--job", &a.job}};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (text.count(k)) *text[k] = v;
    else if (k == "--seconds") a.seconds = std::stod(v);
    else if (k == "--callers") a.callers = std::stoi(v);
    else if (k == "--attackers") a.attackers = std::stoi(v);
    else if (k == "--streams") a.streams = std::stoi(v);
    else throw std::runtime_error("unknown option " + k);
  }
  return a;
}

std::shared_ptr<grpc::Channel> channel(const Args& a, bool own) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read(a.ca);
  ssl.pem_cert_chain = read(a.cert);
  ssl.pem_private_key = read(a.key);
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  if (own) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(a.server, grpc::SslCredentials(ssl), args);
}

void authorize(grpc::ClientContext& c, const std::string& token) {
  if (!token.empty()) c.AddMetadata("authorization", "Bearer " + token);
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// The legitimate load: `callers` threads embedding the image until `until`.
struct Legit {
  std::mutex mu;
  std::vector<double> ms;
  int64_t failed = 0, different = 0;  // different: beyond float rounding of the first result
  double max_difference = 0;
  std::vector<float> reference;
  std::string first_error;
};

void legit_load(const Args& a, Clock::time_point until, Legit& out) {
  std::vector<std::thread> threads;
  const std::string image = read(a.image);
  for (int c = 0; c < a.callers; ++c) {
    threads.emplace_back([&, c] {
      auto stub = refinery::v1::EmbeddingService::NewStub(channel(a, true));
      while (Clock::now() < until) {
        refinery::v1::EmbedImageRequest req;
        auto* img = req.add_images();
        img->set_data(image);
        img->set_name("legit-" + std::to_string(c));
        refinery::v1::EmbedResponse resp;
        grpc::ClientContext ctx;
        authorize(ctx, a.reader);
        const auto t0 = Clock::now();
        const grpc::Status s = stub->EmbedImage(&ctx, req, &resp);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(out.mu);
        if (!s.ok()) {
          ++out.failed;
          if (out.first_error.empty()) out.first_error = s.error_message();
          continue;
        }
        out.ms.push_back(ms);
        std::vector<float> v(resp.embeddings().values().begin(), resp.embeddings().values().end());
        if (out.reference.empty()) {
          out.reference = v;
        } else {
          // Batched with another caller's image, the same image's embedding
          // moves by float rounding (another BLAS blocking): allowed, no more.
          double worst = v.size() == out.reference.size() ? 0.0 : 1.0;
          for (size_t k = 0; k < v.size() && k < out.reference.size(); ++k) {
            worst = std::max(worst, static_cast<double>(std::abs(v[k] - out.reference[k])));
          }
          out.max_difference = std::max(out.max_difference, worst);
          if (worst > 1e-4) ++out.different;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
}

struct Attack {
  std::string name;
  grpc::StatusCode expected;
  std::function<grpc::Status()> call;
};

}  // namespace

int main(int argc, char** argv) try {
  using namespace refinery::v1;
  const Args a = parse(argc, argv);
  const auto shared = channel(a, false);
  auto embed = EmbeddingService::NewStub(shared);
  auto models = ModelService::NewStub(shared);
  auto jobs = JobService::NewStub(shared);
  const std::string bomb = read(a.bomb), truncated = read(a.truncated), polyglot = read(a.polyglot);

  auto embed_image = [&](const std::string& bytes, const std::string& token) {
    EmbedImageRequest req;
    req.add_images()->set_data(bytes);
    EmbedResponse resp;
    grpc::ClientContext ctx;
    authorize(ctx, token);
    return embed->EmbedImage(&ctx, req, &resp);
  };
  auto submit = [&](const std::string& data) {
    SubmitJobRequest req;
    req.mutable_spec()->set_base_model("tiny");
    req.mutable_spec()->set_data(data);
    req.mutable_spec()->set_batch_size(2);
    Job resp;
    grpc::ClientContext ctx;
    authorize(ctx, a.trainer);
    return jobs->SubmitJob(&ctx, req, &resp);
  };
  const std::vector<Attack> attacks = {
      {"no_token", grpc::StatusCode::UNAUTHENTICATED,
       [&] {
         EmbedTextRequest req;
         req.add_texts("a cat");
         EmbedResponse resp;
         grpc::ClientContext ctx;
         authorize(ctx, "");
         return embed->EmbedText(&ctx, req, &resp);
       }},
      {"forged_token", grpc::StatusCode::UNAUTHENTICATED, [&] { return embed_image(bomb, a.reader + "x"); }},
      {"reader_deletes_model", grpc::StatusCode::PERMISSION_DENIED,
       [&] {
         DeleteModelRequest req;
         req.set_model("tiny");
         DeleteModelResponse resp;
         grpc::ClientContext ctx;
         authorize(ctx, a.reader);
         return models->DeleteModel(&ctx, req, &resp);
       }},
      {"reader_imports_model", grpc::StatusCode::PERMISSION_DENIED,
       [&] {
         ImportModelRequest req;
         req.set_path("/etc/passwd");
         ModelInfo resp;
         grpc::ClientContext ctx;
         authorize(ctx, a.reader);
         return models->ImportModel(&ctx, req, &resp);
       }},
      {"dotdot_data", grpc::StatusCode::PERMISSION_DENIED,
       [&] { return submit("csv:" + a.data_root + "/../outside/set.csv"); }},
      {"absolute_data", grpc::StatusCode::PERMISSION_DENIED, [&] { return submit("csv:/etc/passwd"); }},
      {"symlink_data", grpc::StatusCode::PERMISSION_DENIED,
       [&] { return submit("csv:" + a.data_root + "/escape/set.csv"); }},
      {"image_in_data_leads_out", grpc::StatusCode::PERMISSION_DENIED,
       [&] { return submit("csv:" + a.data_root + "/sneaky.csv"); }},
      {"decompression_bomb", grpc::StatusCode::INVALID_ARGUMENT, [&] { return embed_image(bomb, a.reader); }},
      {"truncated_jpeg", grpc::StatusCode::INVALID_ARGUMENT, [&] { return embed_image(truncated, a.reader); }},
      {"polyglot", grpc::StatusCode::INVALID_ARGUMENT, [&] { return embed_image(polyglot, a.reader); }},
      {"oversized_message", grpc::StatusCode::RESOURCE_EXHAUSTED,
       [&] {
         EmbedTextRequest req;
         req.add_texts(std::string(65 << 20, 'a'));  // past --max-message-mb 64
         EmbedResponse resp;
         grpc::ClientContext ctx;
         authorize(ctx, a.reader);
         return embed->EmbedText(&ctx, req, &resp);
       }},
  };

  nlohmann::ordered_json out;
  // 1. The legitimate load alone.
  Legit before;
  legit_load(a, Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(a.seconds * 1000)), before);

  // 2. The same load under attack, with a flood of held streams.
  Legit during;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<std::string, std::map<std::string, int64_t>> outcomes;  // attack -> code -> count
  std::map<std::string, std::string> wrong;                        // attack -> first unexpected status
  std::atomic<int64_t> bad_calls{0};
  std::vector<std::thread> attackers;
  const auto start = Clock::now();
  for (int t = 0; t < a.attackers; ++t) {
    attackers.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); !stop; ++i) {
        const Attack& attack = attacks[i % attacks.size()];
        if (attack.name == "oversized_message" && (i / attacks.size()) % 10 != 0) continue;  // 65 MB each: 1 in 10 rounds
        const grpc::Status s = attack.call();
        ++bad_calls;
        std::lock_guard<std::mutex> lock(mu);
        ++outcomes[attack.name][std::to_string(static_cast<int>(s.error_code()))];
        if (s.error_code() != attack.expected && !wrong.count(attack.name)) {
          wrong[attack.name] = std::to_string(static_cast<int>(s.error_code())) + ": " + s.error_message();
        }
      }
    });
  }
  // Streams held open: watchers of the running job (a reader may watch),
  // and as many without a token (refused at once).
  std::atomic<int64_t> streams_ok{0}, streams_refused{0};
  std::vector<std::unique_ptr<grpc::ClientContext>> watch_contexts;
  std::vector<std::thread> watchers;
  for (int s = 0; s < a.streams; ++s) watch_contexts.push_back(std::make_unique<grpc::ClientContext>());
  for (int s = 0; s < a.streams; ++s) {
    watchers.emplace_back([&, s] {
      WatchJobRequest req;
      req.set_id(a.job);
      grpc::ClientContext& ctx = *watch_contexts[s];
      const bool with_token = s % 2 == 0;
      authorize(ctx, with_token ? a.reader : "");
      auto reader = jobs->WatchJob(&ctx, req);
      JobEvent e;
      while (reader->Read(&e)) {
      }
      const grpc::Status st = reader->Finish();
      if (with_token && (st.ok() || st.error_code() == grpc::StatusCode::CANCELLED)) ++streams_ok;
      if (!with_token && st.error_code() == grpc::StatusCode::UNAUTHENTICATED) ++streams_refused;
    });
  }
  legit_load(a, Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(a.seconds * 1000)), during);
  stop = true;
  for (auto& t : attackers) t.join();
  const double attack_s = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& c : watch_contexts) c->TryCancel();
  for (auto& t : watchers) t.join();

  int64_t unexpected = 0;
  nlohmann::ordered_json kinds = nlohmann::ordered_json::object();
  for (const auto& attack : attacks) {
    kinds[attack.name] = {{"expected", static_cast<int>(attack.expected)}, {"outcomes", outcomes[attack.name]}};
    if (wrong.count(attack.name)) {
      kinds[attack.name]["unexpected"] = wrong[attack.name];
      ++unexpected;
    }
  }
  auto phase = [](const Legit& l, double seconds) {
    return nlohmann::ordered_json{{"calls", l.ms.size()},
                                  {"failed", l.failed},
                                  {"different_results", l.different},
                                  {"max_abs_difference", l.max_difference},
                                  {"first_error", l.first_error},
                                  {"calls_per_second", static_cast<double>(l.ms.size()) / seconds},
                                  {"p50_ms", percentile(l.ms, 0.5)},
                                  {"p99_ms", percentile(l.ms, 0.99)}};
  };
  out["legit_alone"] = phase(before, a.seconds);
  out["legit_under_attack"] = phase(during, a.seconds);
  double across = before.reference.size() == during.reference.size() && !before.reference.empty() ? 0.0 : 1.0;
  for (size_t k = 0; k < before.reference.size() && k < during.reference.size(); ++k) {
    across = std::max(across, static_cast<double>(std::abs(before.reference[k] - during.reference[k])));
  }
  out["same_embedding_in_both"] = across <= 1e-4;
  out["bad_calls"] = bad_calls.load();
  out["bad_calls_per_second"] = static_cast<double>(bad_calls.load()) / attack_s;
  out["attack_kinds_with_unexpected_status"] = unexpected;
  out["streams_held"] = streams_ok.load();
  out["streams_refused"] = streams_refused.load();
  out["attacks"] = kinds;
  std::cout << out.dump(2) << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::cerr << "hostile_client: " << e.what() << '\n';
  return 2;
}
