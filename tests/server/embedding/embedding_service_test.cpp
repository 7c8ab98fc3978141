// The embedding service through a real gRPC server in-process: what a
// client gets must equal the reference model's outputs and the offline tool.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <dirent.h>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/checkpoint/checkpoint_reader.h"
#include "core/embedding/embedder.h"
#include "core/safetensors/safetensors.h"
#include "server/test_server.h"

namespace refinery {
namespace {

using testing::TestServer;

std::vector<std::string> fixture_texts() {
  return nlohmann::json::parse(testing::read_file(testing::fixture("texts.json"))).get<std::vector<std::string>>();
}

std::vector<std::string> fixture_images() {
  std::vector<std::string> names;
  DIR* d = opendir(testing::fixture("images").c_str());
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

torch::Tensor reference(const std::string& key) {
  auto f = SafetensorsFile::open(testing::fixture("reference.safetensors"));
  auto v = f.at(key).to_floats();
  return torch::from_blob(v.data(), f.at(key).shape, torch::kFloat).clone();
}

torch::Tensor to_tensor(const v1::Matrix& m) {
  return torch::from_blob(const_cast<float*>(m.values().data()), {m.rows(), m.dim()}, torch::kFloat).clone();
}

void add_image(google::protobuf::RepeatedPtrField<v1::Image>* images, const std::string& name, std::string bytes) {
  auto* img = images->Add();
  img->set_name(name);
  img->set_data(std::move(bytes));
}

void expect_rows_match(const torch::Tensor& got, const torch::Tensor& want, double min_cos) {
  ASSERT_EQ(got.sizes(), want.sizes());
  const auto cos = torch::cosine_similarity(got, want, 1);
  for (int64_t i = 0; i < cos.size(0); ++i) EXPECT_GE(cos[i].item<double>(), min_cos) << "row " << i;
}

// The embedded items counted so far for a modality, from the metrics.
double embedded_items(TestServer& server, const std::string& modality) {
  const std::string text = server.metrics().serialize();
  const std::string series = "refinery_embedded_items_total{modality=\"" + modality + "\"} ";
  const size_t at = text.find(series);
  return at == std::string::npos ? 0 : std::stod(text.substr(at + series.size()));
}

// CLIP's zero-shot probabilities for one image file, computed with the
// offline embedder (independent of the server).
torch::Tensor offline_zero_shot(const std::string& image, const std::vector<std::string>& labels,
                                const std::vector<std::string>& templates) {
  Embedder e(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), torch::kCPU, {64, true, true});
  auto features = e.embed_image_files({image});
  std::vector<std::string> prompts;
  for (const auto& l : labels) {
    for (const auto& t : templates) prompts.push_back(t.substr(0, t.find("{}")) + l + t.substr(t.find("{}") + 2));
  }
  const int64_t L = static_cast<int64_t>(labels.size()), T = static_cast<int64_t>(templates.size());
  auto classes = torch::nn::functional::normalize(e.embed_texts(prompts).view({L, T, -1}).mean(1),
                                                  torch::nn::functional::NormalizeFuncOptions().dim(1));
  return (features.matmul(classes.t()) * e.model()->logit_scale.exp()).softmax(1)[0];
}

v1::ClassifyRequest classify_request(const std::vector<std::string>& labels, const std::vector<std::string>& templates,
                                     const std::string& image) {
  v1::ClassifyRequest req;
  for (const auto& l : labels) req.add_labels(l);
  for (const auto& t : templates) req.add_templates(t);
  add_image(req.mutable_images(), image, testing::read_file(testing::fixture("images/" + image)));
  return req;
}

void expect_probabilities(const v1::ClassifyResponse& resp, const torch::Tensor& want) {
  ASSERT_EQ(resp.results_size(), 1);
  const auto& scores = resp.results(0).labels();
  ASSERT_EQ(scores.size(), want.size(0));
  for (const auto& s : scores) EXPECT_NEAR(s.probability(), want[s.index()].item<double>(), 1e-4) << s.label();
}

TEST(EmbeddingService, TextEmbeddingsEqualTheReferenceAndTheOfflineTool) {
  TestServer server;
  auto stub = server.embedding();
  v1::EmbedTextRequest req;
  for (const auto& t : fixture_texts()) req.add_texts(t);
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->EmbedText(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.model(), "tiny@1");
  const auto got = to_tensor(resp.embeddings());
  expect_rows_match(got, reference("text_features"), 0.99999);
  Embedder offline(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), torch::kCPU);
  EXPECT_TRUE(torch::allclose(got, offline.embed_texts(fixture_texts()), 1e-4, 1e-5));
  EXPECT_GT(resp.timing().inference_ms(), 0);
  EXPECT_GE(resp.timing().total_ms(), resp.timing().inference_ms());
}

TEST(EmbeddingService, ImageEmbeddingsEqualTheReference) {
  TestServer server;
  auto stub = server.embedding();
  v1::EmbedImageRequest req;
  for (const auto& name : fixture_images()) {
    add_image(req.mutable_images(), name, testing::read_file(testing::fixture("images/" + name)));
  }
  req.set_normalize(true);
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->EmbedImage(&ctx, req, &resp).ok());
  const auto got = to_tensor(resp.embeddings());
  expect_rows_match(got, reference("image_features"), 0.9995);
  EXPECT_TRUE(torch::allclose(got.norm(2, 1), torch::ones({got.size(0)}), 1e-5, 1e-5));  // normalize honoured
}

TEST(EmbeddingService, ConcurrentCallsEachGetTheirOwnEmbeddings) {
  TestServer server;
  const auto texts = fixture_texts();
  const auto want = reference("text_features");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int c = 0; c < 8; ++c) {
    threads.emplace_back([&, c] {
      auto stub = server.embedding();
      for (int i = c; i < 64; i += 8) {
        v1::EmbedTextRequest req;
        req.add_texts(texts[i]);
        v1::EmbedResponse resp;
        grpc::ClientContext ctx;
        if (!stub->EmbedText(&ctx, req, &resp).ok()) {
          ++failures;
          continue;
        }
        const auto got = to_tensor(resp.embeddings());
        if (torch::cosine_similarity(got[0], want[i], 0).item<double>() < 0.99999) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// Each bad input gets a clear status naming the culprit, and the server
// answers the next call normally.
TEST(EmbeddingService, BadInputGetsAClearStatusAndTheServerCarriesOn) {
  ServerConfig config;
  config.max_request_items = 4;
  TestServer server(config);
  auto stub = server.embedding();
  const std::string jpeg = testing::read_file(testing::fixture("images/rocket.jpg"));
  struct Case {
    const char* what;
    std::function<grpc::Status()> call;
    grpc::StatusCode code;
    const char* phrase;
  };
  auto image_call = [&](const std::string& name, const std::string& bytes, const std::string& model = "") {
    return [&, name, bytes, model] {
      v1::EmbedImageRequest req;
      req.set_model(model);
      add_image(req.mutable_images(), name, bytes);
      v1::EmbedResponse resp;
      grpc::ClientContext ctx;
      return stub->EmbedImage(&ctx, req, &resp);
    };
  };
  auto text_call = [&](std::vector<std::string> texts, const std::string& model = "") {
    return [&, texts, model] {
      v1::EmbedTextRequest req;
      req.set_model(model);
      for (const auto& t : texts) req.add_texts(t);
      v1::EmbedResponse resp;
      grpc::ClientContext ctx;
      return stub->EmbedText(&ctx, req, &resp);
    };
  };
  const std::vector<Case> cases = {
      {"truncated jpeg", image_call("rocket-half.jpg", jpeg.substr(0, jpeg.size() / 2)),
       grpc::StatusCode::INVALID_ARGUMENT, "rocket-half.jpg"},
      {"text named .png", image_call("notes.png", "just some words, not pixels"), grpc::StatusCode::INVALID_ARGUMENT,
       "notes.png"},
      {"empty list", text_call({}), grpc::StatusCode::INVALID_ARGUMENT, "no texts"},
      {"unknown model", text_call({"a cat"}, "vit-huge"), grpc::StatusCode::NOT_FOUND, "vit-huge"},
      {"oversized request", text_call(std::vector<std::string>(5, "a cat")), grpc::StatusCode::INVALID_ARGUMENT,
       "too many texts: 5"},
  };
  for (const auto& c : cases) {
    const grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), c.code) << c.what << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.phrase), std::string::npos) << c.what << ": " << s.error_message();
    EXPECT_TRUE(text_call({"a photo of a cat"})().ok()) << "server did not recover after " << c.what;
  }
}

// Decodes lease what the image header says the pixels take; an image that
// alone needs more than --decode-memory-mb is refused before it is decoded,
// naming it and the flag, and smaller images go on being served.
TEST(EmbeddingService, AnImageLargerThanTheDecodeBudgetIsRefusedFromItsHeader) {
  ServerConfig config;
  config.decode_memory_mb = 1;  // rocket.jpg is 640 x 427: 3.3 MB of decode buffers
  TestServer server(config);
  auto embed = [&](const std::string& image) {
    v1::EmbedImageRequest req;
    add_image(req.mutable_images(), image, testing::read_file(testing::fixture("images/" + image)));
    v1::EmbedResponse resp;
    grpc::ClientContext ctx;
    return server.embedding()->EmbedImage(&ctx, req, &resp);
  };
  const grpc::Status refused = embed("rocket.jpg");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_NE(refused.error_message().find("images[0] (rocket.jpg)"), std::string::npos) << refused.error_message();
  EXPECT_NE(refused.error_message().find("--decode-memory-mb"), std::string::npos) << refused.error_message();
  const grpc::Status small = embed("palette_color.png");  // 10 x 10
  EXPECT_TRUE(small.ok()) << small.error_message();
}

TEST(EmbeddingService, ClassifyGivesCLIPsZeroShotProbabilities) {
  TestServer server;
  auto stub = server.embedding();
  v1::ClassifyRequest req;
  const std::vector<std::string> labels = {"cat", "dog", "rocket", "coffee"};
  const std::vector<std::string> templates = {"a photo of a {}.", "a drawing of a {}."};
  for (const auto& l : labels) req.add_labels(l);
  for (const auto& t : templates) req.add_templates(t);
  add_image(req.mutable_images(), "chelsea.png", testing::read_file(testing::fixture("images/chelsea.png")));
  v1::ClassifyResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->Classify(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 1);
  const auto& scores = resp.results(0).labels();
  ASSERT_EQ(scores.size(), 4);
  // Independent computation with the offline embedder.
  Embedder e(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), torch::kCPU, {64, true, true});
  auto image = e.embed_image_files({testing::fixture("images/chelsea.png")});
  std::vector<std::string> prompts;
  for (const auto& l : labels) {
    for (const auto& t : templates) prompts.push_back(t.substr(0, t.find("{}")) + l + t.substr(t.find("{}") + 2));
  }
  auto classes = torch::nn::functional::normalize(e.embed_texts(prompts).view({4, 2, -1}).mean(1),
                                                  torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto probs = (image.matmul(classes.t()) * e.model()->logit_scale.exp()).softmax(1)[0];
  double sum = 0;
  for (int i = 0; i < 4; ++i) {
    sum += scores[i].probability();
    EXPECT_NEAR(scores[i].probability(), probs[scores[i].index()].item<double>(), 1e-4) << scores[i].label();
    if (i > 0) {
      EXPECT_GE(scores[i - 1].probability(), scores[i].probability());
    }
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
}

TEST(EmbeddingService, RankOrdersCandidatesByCosine) {
  TestServer server;
  auto stub = server.embedding();
  v1::RankRequest req;
  req.set_text("an astronaut");
  req.set_score(v1::SCORE_MODE_COSINE);
  const auto names = fixture_images();
  for (const auto& n : names) add_image(req.mutable_images(), n, testing::read_file(testing::fixture("images/" + n)));
  v1::RankResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->Rank(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.items_size(), static_cast<int>(names.size()));
  Embedder e(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), torch::kCPU, {64, true, true});
  std::vector<std::string> paths;
  for (const auto& n : names) paths.push_back(testing::fixture("images/" + n));
  auto cos = e.embed_image_files(paths).matmul(e.embed_texts({"an astronaut"})[0]);
  for (int i = 0; i < resp.items_size(); ++i) {
    EXPECT_NEAR(resp.items(i).score(), cos[resp.items(i).index()].item<double>(), 1e-4);
    EXPECT_EQ(resp.items(i).name(), names[resp.items(i).index()]);
    if (i > 0) {
      EXPECT_GE(resp.items(i - 1).score(), resp.items(i).score());
    }
  }
}

TEST(EmbeddingService, CallsAreCountedInTheMetrics) {
  TestServer server;
  auto stub = server.embedding();
  v1::EmbedTextRequest req;
  req.add_texts("a cat");
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->EmbedText(&ctx, req, &resp).ok());
  v1::EmbedTextRequest bad;
  grpc::ClientContext ctx2;
  stub->EmbedText(&ctx2, bad, &resp);
  const std::string text = server.metrics().serialize();
  EXPECT_NE(text.find(R"(refinery_grpc_calls_total{code="OK",method="EmbedText"} 1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(refinery_grpc_calls_total{code="INVALID_ARGUMENT",method="EmbedText"} 1)"), std::string::npos);
  EXPECT_NE(text.find(R"(refinery_batch_size_count{modality="text"} 1)"), std::string::npos);
}


TEST(EmbeddingService, ClassifyBuildsEachClassifierOnce) {
  TestServer server;
  auto stub = server.embedding();
  const std::vector<std::string> labels = {"cat", "dog", "rocket"};
  const std::vector<std::string> two = {"a photo of a {}.", "a drawing of a {}."};
  const auto want = offline_zero_shot(testing::fixture("images/chelsea.png"), labels, two);
  for (int call = 0; call < 3; ++call) {
    v1::ClassifyResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->Classify(&ctx, classify_request(labels, two, "chelsea.png"), &resp).ok());
    expect_probabilities(resp, want);
    // The 3 x 2 prompts are embedded by the first call only.
    EXPECT_EQ(embedded_items(server, "text"), 6) << "call " << call;
  }
  EXPECT_EQ(server.embedding_service().classifiers().size(), 1u);
  // Other templates are another classifier.
  const std::vector<std::string> one = {"a photo of a {}."};
  v1::ClassifyResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->Classify(&ctx, classify_request(labels, one, "chelsea.png"), &resp).ok());
  expect_probabilities(resp, offline_zero_shot(testing::fixture("images/chelsea.png"), labels, one));
  EXPECT_EQ(embedded_items(server, "text"), 9);
  EXPECT_EQ(server.embedding_service().classifiers().size(), 2u);
}

TEST(EmbeddingService, ClassifyTakesMorePromptsThanTheQueueHolds) {
  ServerConfig config;
  config.batcher.max_queue_items = 8;
  TestServer server(config);
  auto stub = server.embedding();
  // 5 labels x 2 templates = 10 prompts, more than the 8-item queue.
  const std::vector<std::string> labels = {"cat", "dog", "rocket", "coffee", "astronaut"};
  const std::vector<std::string> templates = {"a photo of a {}.", "a drawing of a {}."};
  v1::ClassifyResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = stub->Classify(&ctx, classify_request(labels, templates, "chelsea.png"), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  expect_probabilities(resp, offline_zero_shot(testing::fixture("images/chelsea.png"), labels, templates));
}

TEST(EmbeddingService, ACallLargerThanTheQueueIsToldToSplitNotToRetry) {
  ServerConfig config;
  config.batcher.max_queue_items = 8;
  TestServer server(config);
  auto stub = server.embedding();
  v1::EmbedTextRequest req;
  for (int i = 0; i < 12; ++i) req.add_texts("caption " + std::to_string(i));
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = stub->EmbedText(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("12"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("--max-queue-items"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("split"), std::string::npos) << s.error_message();
  EXPECT_EQ(s.error_message().find("retry"), std::string::npos) << s.error_message();
  // A call that fits is served.
  req.mutable_texts()->DeleteSubrange(8, 4);
  grpc::ClientContext ctx2;
  EXPECT_TRUE(stub->EmbedText(&ctx2, req, &resp).ok());
  EXPECT_EQ(resp.embeddings().rows(), 8);
}

bool has_lane(const std::map<std::string, int>& depths, const std::string& prefix) {
  for (const auto& [queue, items] : depths) {
    if (queue.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

void embed_text_with(TestServer& server, const std::string& model) {
  v1::EmbedTextRequest req;
  req.set_model(model);
  req.add_texts("a photo of a cat");
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = server.embedding()->EmbedText(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << model << ": " << s.error_message();
}

TEST(EmbeddingService, BatchersOfRemovedModelsAreReclaimed) {
  TestServer server;
  server.model_registry().import(testing::fixture("tiny.safetensors"), "other", "", false);
  embed_text_with(server, "tiny");
  embed_text_with(server, "other");
  ASSERT_TRUE(has_lane(server.engine().queue_depths(), "other@1/"));
  server.model_registry().remove("other");
  const auto depths = server.engine().queue_depths();
  EXPECT_FALSE(has_lane(depths, "other@1/"));
  EXPECT_TRUE(has_lane(depths, "tiny@1/"));  // still loaded: kept
  embed_text_with(server, "tiny");
}

TEST(EmbeddingService, BatchersOfUnloadedModelsAreReclaimedAndRebuiltOnUse) {
  ServerConfig config;
  config.model_memory_budget_gb = 1e-9;  // one model loaded at a time
  TestServer server(config);
  server.model_registry().import(testing::fixture("tiny.safetensors"), "other", "", false);
  embed_text_with(server, "tiny");
  embed_text_with(server, "other");  // loading it unloads tiny
  ASSERT_FALSE(server.model_registry().is_loaded("tiny@1"));
  auto depths = server.engine().queue_depths();
  EXPECT_FALSE(has_lane(depths, "tiny@1/"));
  EXPECT_TRUE(has_lane(depths, "other@1/"));
  embed_text_with(server, "tiny");  // a new lane, the model reloaded
  depths = server.engine().queue_depths();
  EXPECT_TRUE(has_lane(depths, "tiny@1/"));
  EXPECT_FALSE(has_lane(depths, "other@1/"));
}

}  // namespace
}  // namespace refinery
