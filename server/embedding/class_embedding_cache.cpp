#include "server/embedding/class_embedding_cache.h"

#include <exception>

namespace refinery {
namespace {

void append_field(std::string& out, const std::string& s) {
  out += std::to_string(s.size());
  out += ':';
  out += s;
}

}  // namespace

ClassEmbeddingCache::ClassEmbeddingCache(ClassEmbeddingCacheOptions options) : options_(options) {}

std::string ClassEmbeddingCache::key(const std::string& model_ref, int64_t model_created_unix_ms,
                                     const std::vector<std::string>& labels, const std::vector<std::string>& templates) {
  std::string k;
  append_field(k, model_ref);
  append_field(k, std::to_string(model_created_unix_ms));
  k += 'L' + std::to_string(labels.size()) + ';';
  for (const auto& l : labels) append_field(k, l);
  k += 'T' + std::to_string(templates.size()) + ';';
  for (const auto& t : templates) append_field(k, t);
  return k;
}

at::Tensor ClassEmbeddingCache::get(const std::string& key, const std::function<at::Tensor()>& build, bool* hit) {
  std::promise<at::Tensor> promise;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      auto value = it->second.value;
      lock.unlock();
      if (hit != nullptr) *hit = true;
      try {
        return value.get();  // waits for a build under way
      } catch (...) {
        // That build failed, maybe for its own caller's reason (cancelled,
        // deadline): its entry is gone, so this caller builds for itself.
        return get(key, build, hit);
      }
    }
    lru_.push_front(key);
    Entry& e = entries_[key];
    e.value = promise.get_future().share();
    e.lru = lru_.begin();
  }
  if (hit != nullptr) *hit = false;
  at::Tensor value;
  try {
    value = build();
  } catch (...) {
    {
      // Gone before the waiters wake, so that they build anew.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = entries_.find(key);
      if (it != entries_.end()) {
        lru_.erase(it->second.lru);
        entries_.erase(it);
      }
    }
    promise.set_exception(std::current_exception());
    throw;
  }
  promise.set_value(value);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    it->second.bytes = static_cast<int64_t>(value.numel() * value.element_size());
    bytes_ += it->second.bytes;
    evict_locked();
  }
  return value;
}

void ClassEmbeddingCache::evict_locked() {
  // From the least recently used end; entries still building (0 bytes) stay.
  auto it = lru_.end();
  while (bytes_ > options_.max_bytes && it != lru_.begin()) {
    --it;
    auto e = entries_.find(*it);
    if (e->second.bytes == 0) continue;
    bytes_ -= e->second.bytes;
    entries_.erase(e);
    it = lru_.erase(it);
  }
}

size_t ClassEmbeddingCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

int64_t ClassEmbeddingCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace refinery
