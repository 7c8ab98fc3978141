// The fine-tuning input pipeline: the train/validation split, the epoch plan
// (deterministic, resumable) and the prefetching data loader (batches in
// order, the same pixels and tokens as the preprocessor and tokenizer give,
// broken images skipped, prompt shutdown).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/base/error.h"
#include "core/data/caption_dataset.h"
#include "core/data/epoch_plan.h"
#include "core/data/training_data_loader.h"
#include "core/image/image_decoder.h"
#include "core/image/image_preprocessor.h"
#include "core/text/bpe_tokenizer.h"
#include "support/errors.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::expect_invalid;

namespace fs = std::filesystem;
using refinery::testing::TempDir;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

std::vector<int64_t> items_of(const std::vector<BatchItem>& batch) {
  std::vector<int64_t> v;
  for (const BatchItem& b : batch) v.push_back(b.item);
  return v;
}

bool same_batches(const std::vector<BatchItem>& a, const std::vector<BatchItem>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].item != b[i].item || a[i].caption != b[i].caption) return false;
  return true;
}

// ------------------------------------------------------------------ split

TEST(DatasetSplitTest, PartitionsDeterministicallyBySeed) {
  const DatasetSplit a = split_dataset(100, 0.1, 7);
  ASSERT_EQ(a.val.size(), 10u);
  ASSERT_EQ(a.train.size(), 90u);
  EXPECT_TRUE(std::is_sorted(a.val.begin(), a.val.end()));
  EXPECT_TRUE(std::is_sorted(a.train.begin(), a.train.end()));
  std::set<int64_t> all(a.val.begin(), a.val.end());
  all.insert(a.train.begin(), a.train.end());
  EXPECT_EQ(all.size(), 100u);  // disjoint and complete
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 99);

  const DatasetSplit again = split_dataset(100, 0.1, 7);
  EXPECT_EQ(again.val, a.val);
  EXPECT_EQ(again.train, a.train);
  EXPECT_NE(split_dataset(100, 0.1, 8).val, a.val);
  // Not just the first items: a shuffle happened.
  EXPECT_NE(a.val, iota(10));
}

TEST(DatasetSplitTest, ValidationSizeIsRoundedWithAtLeastOneImage) {
  EXPECT_EQ(split_dataset(10, 0.5, 1).val.size(), 5u);
  EXPECT_EQ(split_dataset(10, 0.14, 1).val.size(), 1u);  // round(1.4)
  EXPECT_EQ(split_dataset(10, 0.16, 1).val.size(), 2u);  // round(1.6)
  EXPECT_EQ(split_dataset(3, 0.01, 1).val.size(), 1u);   // round(0.03) = 0, but at least 1
  EXPECT_EQ(split_dataset(1, 0.1, 1).val.size(), 0u);    // one image: it trains
  const DatasetSplit none = split_dataset(5, 0.0, 1);
  EXPECT_TRUE(none.val.empty());
  EXPECT_EQ(none.train, iota(5));
}

TEST(DatasetSplitTest, EveryItemIsEquallyLikelyToBeValidation) {
  // Over many seeds each of 10 items lands in a 2-item validation set with
  // probability 0.2; a biased shuffle would favour some positions.
  const int kSeeds = 4000;
  std::vector<int> hits(10, 0);
  for (int seed = 0; seed < kSeeds; ++seed)
    for (int64_t v : split_dataset(10, 0.2, static_cast<uint64_t>(seed)).val) ++hits[static_cast<size_t>(v)];
  for (int i = 0; i < 10; ++i) {
    // Binomial(4000, 0.2): mean 800, sd ~25; 6 sd is far outside chance.
    EXPECT_NEAR(hits[static_cast<size_t>(i)], 800, 150) << "item " << i;
  }
}

TEST(DatasetSplitTest, RejectsBadFractionsAndNothingToTrain) {
  expect_invalid([] { split_dataset(10, -0.1, 1); }, {"-0.1", "[0, 0.5]"});
  expect_invalid([] { split_dataset(10, 0.6, 1); }, {"0.6", "[0, 0.5]"});
  expect_invalid([] { split_dataset(10, std::nan(""), 1); }, {"[0, 0.5]"});
  expect_invalid([] { split_dataset(0, 0.1, 1); }, {"0 images", "nothing to train"});
  expect_invalid([] { split_dataset(1, 0.5, 1); }, {"1 image", "nothing to train"});
}

// ------------------------------------------------------------------ plan

TEST(EpochPlanTest, EachEpochCoversEveryTrainItemOnceWithDropLast) {
  // 11 train items out of 20, batch 3: 3 steps per epoch, 2 items dropped.
  const std::vector<int64_t> train{0, 2, 3, 5, 7, 8, 11, 13, 17, 18, 19};
  const EpochPlan plan(train, std::vector<int32_t>(20, 1), 3, 42);
  ASSERT_EQ(plan.steps_per_epoch(), 3);
  std::set<int64_t> seen_over_epochs;
  for (int epoch = 0; epoch < 6; ++epoch) {
    std::multiset<int64_t> seen;
    for (int64_t b = 0; b < 3; ++b) {
      const int64_t step = epoch * 3 + b;
      EXPECT_EQ(plan.epoch_of(step), epoch);
      const std::vector<BatchItem> batch = plan.batch(step);
      ASSERT_EQ(batch.size(), 3u);
      for (const BatchItem& it : batch) {
        seen.insert(it.item);
        EXPECT_EQ(it.caption, 0);
      }
    }
    EXPECT_EQ(seen.size(), 9u);
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 9u) << "an item twice in epoch " << epoch;
    for (int64_t i : seen) EXPECT_TRUE(std::count(train.begin(), train.end(), i)) << i << " is not a train item";
    seen_over_epochs.insert(seen.begin(), seen.end());
  }
  // Which items are dropped changes with the epoch's permutation.
  EXPECT_EQ(seen_over_epochs.size(), train.size());
}

TEST(EpochPlanTest, IsAPureFunctionOfItsInputs) {
  const std::vector<int32_t> counts{1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 2, 3};
  const EpochPlan a(iota(12), counts, 4, 9);
  const EpochPlan b(iota(12), counts, 4, 9);
  const EpochPlan other_seed(iota(12), counts, 4, 10);
  bool seed_matters = false;
  for (int64_t step = 0; step < 30; ++step) {
    EXPECT_TRUE(same_batches(a.batch(step), b.batch(step))) << "step " << step;
    seed_matters |= !same_batches(a.batch(step), other_seed.batch(step));
  }
  EXPECT_TRUE(seed_matters);

  // Epochs are shuffled afresh.
  std::vector<int64_t> epoch0, epoch1;
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t i : items_of(a.batch(s))) epoch0.push_back(i);
    for (int64_t i : items_of(a.batch(s + 3))) epoch1.push_back(i);
  }
  EXPECT_NE(epoch0, epoch1);
  EXPECT_NE(epoch0, iota(12));
}

TEST(EpochPlanTest, AResumedPlanGivesTheSameBatches) {
  const std::vector<int32_t> counts{3, 1, 2, 5, 4, 1, 2, 3, 3, 2};
  const EpochPlan full(iota(10), counts, 3, 5);
  std::vector<std::vector<BatchItem>> run;
  for (int64_t s = 0; s < 20; ++s) run.push_back(full.batch(s));
  // A fresh plan asked from step 7 on, and one asked in a jumbled order
  // (across epoch boundaries, so the cached permutation is replaced).
  const EpochPlan resumed(iota(10), counts, 3, 5);
  for (int64_t s = 7; s < 20; ++s) EXPECT_TRUE(same_batches(resumed.batch(s), run[static_cast<size_t>(s)])) << "step " << s;
  const EpochPlan jumbled(iota(10), counts, 3, 5);
  for (int64_t s : {19, 2, 11, 0, 18, 5, 6, 3, 12}) EXPECT_TRUE(same_batches(jumbled.batch(s), run[static_cast<size_t>(s)])) << "step " << s;
}

TEST(EpochPlanTest, CaptionsAreDrawnPerEpochAndItemIndependentlyOfTheBatching) {
  std::vector<int32_t> counts(30);
  for (size_t i = 0; i < counts.size(); ++i) counts[i] = static_cast<int32_t>(1 + i % 4);
  const EpochPlan by2(iota(30), counts, 2, 77);
  const EpochPlan by5(iota(30), counts, 5, 77);
  std::map<int64_t, std::vector<int>> picks;  // item -> how often each caption was drawn
  for (int epoch = 0; epoch < 200; ++epoch) {
    std::map<int64_t, int32_t> c2, c5;
    for (int64_t b = 0; b < 15; ++b)
      for (const BatchItem& it : by2.batch(epoch * 15 + b)) c2[it.item] = it.caption;
    for (int64_t b = 0; b < 6; ++b)
      for (const BatchItem& it : by5.batch(epoch * 6 + b)) c5[it.item] = it.caption;
    ASSERT_EQ(c2.size(), 30u);
    EXPECT_EQ(c2, c5) << "epoch " << epoch;  // seeded by (seed, epoch, item) only
    for (const auto& [item, caption] : c2) {
      ASSERT_GE(caption, 0);
      ASSERT_LT(caption, counts[static_cast<size_t>(item)]);
      picks[item].resize(static_cast<size_t>(counts[static_cast<size_t>(item)]));
      ++picks[item][static_cast<size_t>(caption)];
    }
  }
  // Item 3 has 4 captions: each drawn about 50 times in 200 epochs.
  for (int c = 0; c < 4; ++c) EXPECT_NEAR(picks[3][static_cast<size_t>(c)], 50, 30) << "caption " << c;
}

TEST(EpochPlanTest, IsSafeToAskFromManyThreads) {
  const EpochPlan plan(iota(50), std::vector<int32_t>(50, 3), 7, 1);
  const EpochPlan reference(iota(50), std::vector<int32_t>(50, 3), 7, 1);
  std::vector<std::vector<BatchItem>> expected;
  for (int64_t s = 0; s < 70; ++s) expected.push_back(reference.batch(s));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        for (int64_t s = t; s < 70; s += 3)
          if (!same_batches(plan.batch(s), expected[static_cast<size_t>(s)])) ++mismatches[static_cast<size_t>(t)];
    });
  for (std::thread& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(EpochPlanTest, RejectsPlansThatCannotFillABatch) {
  expect_invalid([] { EpochPlan({0, 1, 2}, {1, 1, 1}, 5, 0); }, {"3 training images", "5"});
  expect_invalid([] { EpochPlan({0, 1}, {1, 1}, 0, 0); }, {"batch size 0"});
  expect_invalid([] { EpochPlan({0, 4}, {1, 1}, 1, 0); }, {"train item 4"});
  expect_invalid([] { EpochPlan({0, 1}, {1, 0}, 1, 0); }, {"train item 1", "no captions"});
  const EpochPlan ok({0, 1}, {1, 1}, 1, 0);
  expect_invalid([&] { ok.batch(-1); }, {"step -1"});
}

// ------------------------------------------------------------------ loader

// Copies of fixture images plus a file that is not an image.
class TrainingDataLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string src = refinery::testing::fixture("images");
    for (const char* name : {"camera.png", "palette_color.png", "rocket.jpg", "chelsea.png", "transparent.png"}) {
      fs::copy_file(src + "/" + name, dir_ / name);
      good_.push_back(dir_ / name);
    }
    broken_ = dir_ / "broken.png";
    refinery::testing::write_file(broken_, "\x89PNG\r\n\x1a\n but then nothing an image would hold");
    options_.preprocess.size = 32;
    options_.workers = 2;
  }

  // Every good image with two captions; the second one long.
  CaptionDataset dataset() const {
    CaptionDataset ds;
    ds.spec = "test";
    for (size_t i = 0; i < good_.size(); ++i)
      ds.items.push_back({good_[i], {"photo number " + std::to_string(i),
                                     "a very long caption " + std::string(200, 'x') + " about image " + std::to_string(i)}});
    return ds;
  }
  static std::vector<int32_t> counts(const CaptionDataset& ds) {
    std::vector<int32_t> c;
    for (const CaptionedImage& it : ds.items) c.push_back(static_cast<int32_t>(it.captions.size()));
    return c;
  }
  std::vector<float> expected_pixels(const std::string& path) const {
    return ImagePreprocessor(options_.preprocess).preprocess(decode_image_file(path));
  }
  static std::vector<int64_t> expected_tokens(const std::string& caption, int context_length) {
    const std::vector<int32_t> ids = BpeTokenizer::default_instance().tokenize(caption, context_length, true);
    return std::vector<int64_t>(ids.begin(), ids.end());
  }
  static std::vector<float> row_floats(const torch::Tensor& t, int64_t row) {
    const torch::Tensor r = t[row].contiguous();
    return std::vector<float>(r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
  }
  static std::vector<int64_t> row_ints(const torch::Tensor& t, int64_t row) {
    const torch::Tensor r = t[row].contiguous();
    return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
  }

  TempDir dir_;
  std::vector<std::string> good_;
  std::string broken_;
  DataLoaderOptions options_;
};

TEST_F(TrainingDataLoaderTest, HandsOutThePlansBatchesInOrderWithPreprocessedPixelsAndTokens) {
  const CaptionDataset ds = dataset();
  const EpochPlan plan(iota(5), counts(ds), 2, 3);  // 2 steps per epoch
  ASSERT_EQ(plan.steps_per_epoch(), 2);
  std::map<std::string, std::vector<float>> pixels;
  for (const std::string& p : good_) pixels[p] = expected_pixels(p);

  options_.context_length = 16;  // the long captions get cut
  TrainingDataLoader loader(ds, plan, 1, 6, options_);
  for (int64_t step = 1; step < 6; ++step) {
    std::optional<TrainingBatch> batch = loader.next();
    ASSERT_TRUE(batch.has_value()) << "step " << step;
    EXPECT_EQ(batch->step, step);
    EXPECT_EQ(batch->epoch, static_cast<int>(step / 2));
    EXPECT_TRUE(batch->skipped.empty());
    EXPECT_GE(batch->data_seconds, 0.0);
    const std::vector<BatchItem> want = plan.batch(step);
    EXPECT_EQ(batch->items, items_of(want));
    ASSERT_EQ(batch->pixels.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
    ASSERT_EQ(batch->pixels.scalar_type(), torch::kFloat32);
    ASSERT_EQ(batch->tokens.sizes(), (std::vector<int64_t>{2, 16}));
    ASSERT_EQ(batch->tokens.scalar_type(), torch::kInt64);
    for (size_t r = 0; r < want.size(); ++r) {
      const CaptionedImage& item = ds.items[static_cast<size_t>(want[r].item)];
      EXPECT_EQ(row_floats(batch->pixels, static_cast<int64_t>(r)), pixels[item.image_path]) << item.image_path;
      const std::vector<int64_t> tokens = row_ints(batch->tokens, static_cast<int64_t>(r));
      EXPECT_EQ(tokens, expected_tokens(item.captions[static_cast<size_t>(want[r].caption)], 16));
      EXPECT_EQ(tokens.front(), BpeTokenizer::kSot);
    }
  }
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_FALSE(loader.next().has_value());
}

TEST_F(TrainingDataLoaderTest, WorksWithoutPrefetchAndWithDefaultWorkers) {
  const CaptionDataset ds = dataset();
  const EpochPlan plan(iota(5), counts(ds), 5, 11);
  options_.prefetch_batches = 0;
  options_.workers = 0;
  TrainingDataLoader loader(ds, plan, 0, 2, options_);
  for (int64_t step = 0; step < 2; ++step) {
    std::optional<TrainingBatch> batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_EQ(batch->step, step);
    EXPECT_EQ(batch->items, items_of(plan.batch(step)));
    EXPECT_EQ(batch->tokens.size(1), 77);
    const int64_t r = 4;
    EXPECT_EQ(row_floats(batch->pixels, r), expected_pixels(ds.items[static_cast<size_t>(batch->items[r])].image_path));
  }
  EXPECT_FALSE(loader.next().has_value());
}

TEST_F(TrainingDataLoaderTest, SkipsImagesThatFailToDecodeAndNamesThem) {
  CaptionDataset ds = dataset();
  ds.items.push_back({broken_, {"broken"}});
  const std::string missing = dir_ / "deleted.png";
  ds.items.push_back({missing, {"deleted"}});
  const EpochPlan plan(iota(7), counts(ds), 7, 1);  // every item in every batch
  TrainingDataLoader loader(ds, plan, 0, 1, options_);
  std::optional<TrainingBatch> batch = loader.next();
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->skipped.size(), 2u);
  std::set<std::string> skipped_paths;
  for (const std::string& s : batch->skipped) {
    const size_t colon = s.find(": ");
    ASSERT_NE(colon, std::string::npos) << s;
    EXPECT_GT(s.size(), colon + 2) << "no reason in: " << s;
    skipped_paths.insert(s.substr(0, colon));
  }
  EXPECT_EQ(skipped_paths, (std::set<std::string>{broken_, missing}));
  ASSERT_EQ(batch->items.size(), 5u);
  EXPECT_EQ(batch->pixels.size(0), 5);
  EXPECT_EQ(batch->tokens.size(0), 5);
  for (size_t r = 0; r < 5; ++r) {
    const CaptionedImage& item = ds.items[static_cast<size_t>(batch->items[r])];
    EXPECT_LT(batch->items[r], 5);
    EXPECT_EQ(row_floats(batch->pixels, static_cast<int64_t>(r)), expected_pixels(item.image_path));
    const int32_t caption = [&] {
      for (const BatchItem& b : plan.batch(0))
        if (b.item == batch->items[r]) return b.caption;
      return -1;
    }();
    EXPECT_EQ(row_ints(batch->tokens, static_cast<int64_t>(r)), expected_tokens(item.captions[static_cast<size_t>(caption)], 77));
  }
}

TEST_F(TrainingDataLoaderTest, StopsPromptlyWithoutFinishingThePrefetchQueue) {
  // 24 copies of a 512x512 image, batches of 8 on one worker, 2 batches
  // prefetched: after the first batch, 16 more images are queued.
  CaptionDataset ds;
  const std::string big = dir_ / "astronaut.png";
  fs::copy_file(refinery::testing::fixture("images/astronaut.png"), big);
  for (int i = 0; i < 24; ++i) ds.items.push_back({big, {"an astronaut"}});
  const EpochPlan plan(iota(24), counts(ds), 8, 1);
  options_.workers = 1;
  options_.prefetch_batches = 2;

  double first_batch = 0, destroy = 0;
  {
    auto loader = std::make_unique<TrainingDataLoader>(ds, plan, 0, 300, options_);
    const auto t0 = Clock::now();
    ASSERT_TRUE(loader->next().has_value());
    first_batch = seconds_since(t0);  // about one batch of decoding
    const auto t1 = Clock::now();
    loader.reset();
    destroy = seconds_since(t1);  // at most the image in the worker's hands
  }
  EXPECT_LT(destroy, first_batch / 2) << "destroying took " << destroy << " s; a batch takes " << first_batch << " s";

  // stop() from another thread wakes a consumer blocked in next(): the first
  // batch needs about `first_batch` seconds, the stop comes after an eighth.
  TrainingDataLoader loader(ds, plan, 0, 300, options_);
  const auto t2 = Clock::now();
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::duration<double>(first_batch / 8));
    loader.stop();
  });
  const std::optional<TrainingBatch> stopped = loader.next();
  const double blocked = seconds_since(t2);
  stopper.join();
  EXPECT_FALSE(stopped.has_value());
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_LT(blocked, first_batch / 2) << "next() blocked " << blocked << " s; a batch takes " << first_batch << " s";
}

TEST_F(TrainingDataLoaderTest, RejectsBadArguments) {
  const CaptionDataset ds = dataset();
  const EpochPlan plan(iota(5), counts(ds), 2, 3);
  expect_invalid([&] { TrainingDataLoader(ds, plan, 4, 2, options_); }, {"[4, 2)"});
  DataLoaderOptions bad = options_;
  bad.prefetch_batches = -1;
  expect_invalid([&] { TrainingDataLoader(ds, plan, 0, 2, bad); }, {"prefetch_batches -1"});
  const EpochPlan too_big(iota(8), std::vector<int32_t>(8, 1), 2, 3);
  expect_invalid([&] { TrainingDataLoader(ds, too_big, 0, 2, options_); }, {"item 5", "5 items"});
}

TEST_F(TrainingDataLoaderTest, LoadImagesKeepsTheGoodOnesInOrder) {
  const std::string missing = dir_ / "deleted.png";
  const std::vector<std::string> paths{good_[0], broken_, good_[2], missing, good_[4]};
  std::vector<int64_t> kept;
  std::vector<std::string> failed;
  const torch::Tensor px = load_images(paths, options_.preprocess, 3, &kept, &failed);
  EXPECT_EQ(kept, (std::vector<int64_t>{0, 2, 4}));
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[0].rfind(broken_ + ": ", 0), 0u) << failed[0];
  EXPECT_EQ(failed[1].rfind(missing + ": ", 0), 0u) << failed[1];
  ASSERT_EQ(px.sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(row_floats(px, 0), expected_pixels(good_[0]));
  EXPECT_EQ(row_floats(px, 1), expected_pixels(good_[2]));
  EXPECT_EQ(row_floats(px, 2), expected_pixels(good_[4]));

  const torch::Tensor none = load_images({broken_}, options_.preprocess, 0, &kept, &failed);
  EXPECT_EQ(none.sizes(), (std::vector<int64_t>{0, 3, 32, 32}));
  EXPECT_TRUE(kept.empty());
  EXPECT_EQ(failed.size(), 1u);
}

}  // namespace
}  // namespace refinery
