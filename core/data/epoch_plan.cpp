#include "core/data/epoch_plan.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <utility>

#include "core/base/error.h"

namespace refinery {
namespace {

// Purposes, so the split, the epoch orders and the caption draws of one seed
// are independent streams.
constexpr uint64_t kSplitStream = 1;
constexpr uint64_t kEpochStream = 2;
constexpr uint64_t kCaptionStream = 3;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t mix(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

// Uniform in [0, bound), bound >= 1, without modulo bias: reject the lowest
// 2^64 mod bound values so that what remains is a whole number of cycles.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

// Fisher-Yates, from the back.
void shuffle(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(uniform_below(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace

DatasetSplit split_dataset(size_t n, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0.0 && val_fraction <= 0.5)) {
    std::ostringstream m;
    m << "validation fraction " << val_fraction << " is outside [0, 0.5]";
    throw invalid_argument(m.str());
  }
  size_t n_val = static_cast<size_t>(std::llround(static_cast<double>(n) * val_fraction));
  if (val_fraction > 0 && n >= 2 && n_val == 0) n_val = 1;
  if (n_val >= n) {
    std::ostringstream m;
    m << "a data set of " << n << " image" << (n == 1 ? "" : "s") << " with validation fraction " << val_fraction
      << " leaves nothing to train on";
    throw invalid_argument(m.str());
  }
  std::vector<int64_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<int64_t>(i);
  std::mt19937_64 rng(mix(seed, kSplitStream));
  shuffle(order, rng);
  DatasetSplit split;
  split.val.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_val));
  split.train.assign(order.begin() + static_cast<std::ptrdiff_t>(n_val), order.end());
  std::sort(split.val.begin(), split.val.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

EpochPlan::EpochPlan(std::vector<int64_t> train_items, std::vector<int32_t> caption_counts, int64_t batch_size, uint64_t seed)
    : train_items_(std::move(train_items)), caption_counts_(std::move(caption_counts)), batch_size_(batch_size), seed_(seed) {
  if (batch_size_ < 1) throw invalid_argument("batch size " + std::to_string(batch_size_) + " must be at least 1");
  for (size_t i = 0; i < train_items_.size(); ++i) {
    const int64_t item = train_items_[i];
    if (item < 0 || item >= static_cast<int64_t>(caption_counts_.size()))
      throw invalid_argument("train item " + std::to_string(item) + " (entry " + std::to_string(i) + ") is outside the data set's " +
                             std::to_string(caption_counts_.size()) + " items");
    if (caption_counts_[static_cast<size_t>(item)] < 1)
      throw invalid_argument("train item " + std::to_string(item) + " has no captions");
  }
  steps_per_epoch_ = static_cast<int64_t>(train_items_.size()) / batch_size_;
  if (steps_per_epoch_ == 0)
    throw invalid_argument(std::to_string(train_items_.size()) + " training image" + (train_items_.size() == 1 ? "" : "s") +
                           " do not fill one batch of " + std::to_string(batch_size_) + "; lower the batch size or add images");
}

EpochPlan::~EpochPlan() = default;

int EpochPlan::epoch_of(int64_t step) const {
  if (step < 0) throw invalid_argument("step " + std::to_string(step) + " is negative");
  return static_cast<int>(step / steps_per_epoch_);
}

std::vector<BatchItem> EpochPlan::batch(int64_t step) const {
  const int64_t epoch = epoch_of(step);
  const int64_t index = step % steps_per_epoch_;
  std::shared_ptr<const std::vector<int64_t>> order;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_epoch_ != epoch) {
      auto fresh = std::make_shared<std::vector<int64_t>>(train_items_);
      std::mt19937_64 rng(mix(mix(seed_, kEpochStream), static_cast<uint64_t>(epoch)));
      shuffle(*fresh, rng);
      cached_order_ = std::move(fresh);
      cached_epoch_ = epoch;
    }
    order = cached_order_;
  }
  const uint64_t caption_seed = mix(mix(seed_, kCaptionStream), static_cast<uint64_t>(epoch));
  std::vector<BatchItem> out;
  out.reserve(static_cast<size_t>(batch_size_));
  for (int64_t k = index * batch_size_; k < (index + 1) * batch_size_; ++k) {
    const int64_t item = (*order)[static_cast<size_t>(k)];
    const int32_t count = caption_counts_[static_cast<size_t>(item)];
    int32_t caption = 0;
    if (count > 1) {
      std::mt19937_64 rng(mix(caption_seed, static_cast<uint64_t>(item)));
      caption = static_cast<int32_t>(uniform_below(rng, static_cast<uint64_t>(count)));
    }
    out.push_back(BatchItem{item, caption});
  }
  return out;
}

}  // namespace refinery
