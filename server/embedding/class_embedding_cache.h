// Zero-shot classifiers, kept: the class embeddings Classify compares images
// with, by (model, labels, templates). Building one embeds labels x
// templates prompts; a client classifying many images against the same
// labels pays that once. Least recently used entries go first beyond the
// byte budget. Concurrent misses on one key build it once; a failed build is
// not kept, and those who waited on it build for themselves (the failure may
// be the first caller's own: a cancelled call or a passed deadline).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace refinery {

struct ClassEmbeddingCacheOptions {
  int64_t max_bytes = int64_t{256} << 20;  // ImageNet's 1000 classes at D=768 take 3 MB
};

class ClassEmbeddingCache {
 public:
  explicit ClassEmbeddingCache(ClassEmbeddingCacheOptions options = {});

  // The key of a classifier: the model's identity (its ref and when that ref
  // was registered, so a re-imported name is a new model), labels and
  // templates, each length-prefixed so that no two inputs share a key.
  static std::string key(const std::string& model_ref, int64_t model_created_unix_ms,
                         const std::vector<std::string>& labels, const std::vector<std::string>& templates);

  // The cached [L, D] tensor for `key`, or `build()`'s result, stored.
  // `*hit` tells which (may be null).
  at::Tensor get(const std::string& key, const std::function<at::Tensor()>& build, bool* hit = nullptr);

  size_t size() const;
  int64_t bytes() const;

 private:
  struct Entry {
    std::shared_future<at::Tensor> value;
    int64_t bytes = 0;  // 0 while building
    std::list<std::string>::iterator lru;
  };
  void evict_locked();

  const ClassEmbeddingCacheOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recently used first
  int64_t bytes_ = 0;
};

}  // namespace refinery
