// The zero-shot classifier cache: keys, LRU by bytes, one build per key under
// concurrency, failed builds not kept.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "server/embedding/class_embedding_cache.h"

namespace refinery {
namespace {

TEST(ClassEmbeddingCache, KeysTellEveryInputApart) {
  const auto k = [](std::vector<std::string> labels, std::vector<std::string> templates, int64_t created = 1) {
    return ClassEmbeddingCache::key("tiny@1", created, labels, templates);
  };
  EXPECT_EQ(k({"cat", "dog"}, {"a {}"}), k({"cat", "dog"}, {"a {}"}));
  EXPECT_NE(k({"cat", "dog"}, {"a {}"}), k({"cat,dog"}, {"a {}"}));
  EXPECT_NE(k({"cat", "dog"}, {"a {}"}), k({"dog", "cat"}, {"a {}"}));
  EXPECT_NE(k({"cat"}, {"a {}", "b {}"}), k({"cat", "a {}"}, {"b {}"}));
  EXPECT_NE(k({"cat"}, {"a {}"}), k({"cat"}, {"a {}"}, 2));  // the name re-imported: another model
  EXPECT_NE(ClassEmbeddingCache::key("tiny@1", 1, {"1:x"}, {}), ClassEmbeddingCache::key("tiny@1", 1, {"x"}, {"x"}));
}

TEST(ClassEmbeddingCache, BuildsOnMissAndEvictsTheLeastRecentlyUsedBeyondTheBudget) {
  ClassEmbeddingCacheOptions o;
  o.max_bytes = 2 * 10 * 4;  // two [10] float tensors
  ClassEmbeddingCache cache(o);
  int builds = 0;
  auto build = [&](float v) {
    return [&builds, v] {
      ++builds;
      return torch::full({10}, v);
    };
  };
  bool hit = true;
  EXPECT_EQ(cache.get("a", build(1), &hit)[0].item<float>(), 1);
  EXPECT_FALSE(hit);
  EXPECT_EQ(cache.get("a", build(9), &hit)[0].item<float>(), 1);  // the stored one
  EXPECT_TRUE(hit);
  cache.get("b", build(2));
  cache.get("a", build(1));  // a is now the most recently used
  cache.get("c", build(3));  // over budget: b goes
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.bytes(), 80);
  EXPECT_EQ(builds, 3);
  cache.get("a", build(1), &hit);
  EXPECT_TRUE(hit);
  cache.get("b", build(2), &hit);
  EXPECT_FALSE(hit);
  EXPECT_EQ(builds, 4);
}

TEST(ClassEmbeddingCache, ConcurrentMissesBuildOnce) {
  ClassEmbeddingCache cache;
  std::atomic<int> builds{0};
  std::vector<std::thread> threads;
  std::vector<float> got(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      got[i] = cache.get("k", [&] {
        ++builds;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return torch::full({4}, 7.0f);
      })[0].item<float>();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(builds.load(), 1);
  for (float v : got) EXPECT_EQ(v, 7.0f);
}

TEST(ClassEmbeddingCache, AFailedBuildIsNotKept) {
  ClassEmbeddingCache cache;
  EXPECT_THROW(cache.get("k", []() -> at::Tensor { throw std::runtime_error("model gone"); }), std::runtime_error);
  EXPECT_EQ(cache.size(), 0u);
  bool hit = true;
  EXPECT_EQ(cache.get("k", [] { return torch::ones({2}); }, &hit)[1].item<float>(), 1.0f);
  EXPECT_FALSE(hit);
}

TEST(ClassEmbeddingCache, WaitersOnAFailedBuildBuildForThemselves) {
  ClassEmbeddingCache cache;
  std::atomic<bool> first_started{false};
  std::thread first([&] {
    EXPECT_THROW(cache.get("k",
                           [&]() -> at::Tensor {
                             first_started = true;
                             std::this_thread::sleep_for(std::chrono::milliseconds(200));
                             throw std::runtime_error("the first caller was cancelled");
                           }),
                 std::runtime_error);
  });
  while (!first_started) std::this_thread::yield();
  // Waits on the first build, which fails: this caller's own build serves it.
  const auto got = cache.get("k", [] { return torch::full({2}, 5.0f); });
  first.join();
  EXPECT_EQ(got[0].item<float>(), 5.0f);
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace refinery
