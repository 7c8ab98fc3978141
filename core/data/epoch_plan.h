// Which items a fine-tuning job trains and validates on, and in what order it
// sees them. Everything here is a pure function of its inputs, with all
// randomness from std::mt19937_64 (fully specified by the standard) through
// our own Fisher-Yates shuffle and bounded draws (std::shuffle and
// std::uniform_int_distribution are implementation-defined), each stream
// seeded by a splitmix64 mix of (seed, purpose, epoch, item). So the same
// inputs give the same split and the same batches on every platform, and a
// job resumed at step k gets exactly the batches k, k+1, ... it would have
// got without stopping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace refinery {

struct DatasetSplit {
  std::vector<int64_t> train, val;  // item indices, each sorted ascending
};

// A seeded shuffle of 0..n-1; its first round(n * val_fraction) entries (at
// least 1 when val_fraction > 0 and n >= 2) are validation, the rest train.
// Throws refinery::Error (kInvalidArgument) when val_fraction is outside
// [0, 0.5] or nothing is left to train on.
DatasetSplit split_dataset(size_t n, double val_fraction, uint64_t seed);

struct BatchItem {
  int64_t item;     // dataset item index
  int32_t caption;  // which of the item's captions
};

// The order of training: each epoch is a fresh seeded permutation of the
// train items (seed mixed with the epoch), cut into batches of batch_size
// with the remainder dropped; each image gets one caption per epoch, drawn
// at random (seeded by seed, epoch and item). Global step s (from 0) is
// batch s % steps_per_epoch() of epoch s / steps_per_epoch().
class EpochPlan {
 public:
  // caption_counts is indexed by dataset item. Throws refinery::Error
  // (kInvalidArgument) for batch_size < 1, a train item outside
  // caption_counts or without captions, and fewer train items than one batch.
  EpochPlan(std::vector<int64_t> train_items, std::vector<int32_t> caption_counts, int64_t batch_size, uint64_t seed);
  ~EpochPlan();
  EpochPlan(const EpochPlan&) = delete;
  EpochPlan& operator=(const EpochPlan&) = delete;

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t batch_size() const { return batch_size_; }
  const std::vector<int64_t>& train_items() const { return train_items_; }

  // The batch of global step `step` (>= 0, else kInvalidArgument). Safe to
  // call from several threads; the permutation of the latest epoch asked
  // for is cached.
  std::vector<BatchItem> batch(int64_t step) const;
  int epoch_of(int64_t step) const;

 private:
  std::vector<int64_t> train_items_;
  std::vector<int32_t> caption_counts_;
  int64_t batch_size_;
  uint64_t seed_;
  int64_t steps_per_epoch_;

  mutable std::mutex mu_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::shared_ptr<const std::vector<int64_t>> cached_order_;
};

}  // namespace refinery
