// The fine-tuning input pipeline: batches of an EpochPlan decoded (see
// image_decoder.h), preprocessed as CLIP does (image_preprocessor.h) and
// tokenized (bpe_tokenizer.h) on worker threads, ahead of the training loop.
//
// Work is spread per image, not per batch: workers take images from one
// queue in step order, so a single batch already uses every worker, and the
// batch the consumer waits for is always finished first. Each worker writes
// its image's floats straight into the batch's pixel tensor. Images that
// fail to decode are left out of their batch and reported, so one bad file
// does not stop a job.
#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/data/caption_dataset.h"
#include "core/data/epoch_plan.h"
#include "core/image/image_preprocessor.h"

namespace refinery {

struct TrainingBatch {
  int64_t step = 0;
  int epoch = 0;
  at::Tensor pixels;                 // [b, 3, S, S] float32 CPU, normalised as CLIP does
  at::Tensor tokens;                 // [b, context_length] int64 CPU (tokenize, truncate=true)
  std::vector<int64_t> items;        // dataset item of each row
  std::vector<std::string> skipped;  // "path: reason" per image that failed; left out, so b shrinks
  double data_seconds = 0;           // how long next() blocked waiting for this batch
};

struct DataLoaderOptions {
  int workers = 0;           // decode threads; 0 = std::thread::hardware_concurrency()
  int prefetch_batches = 2;  // batches prepared ahead of the consumer (0: none)
  ImagePreprocessorOptions preprocess;  // size/mean/std from the model's config (caller fills)
  int context_length = 77;
  // Data parallel: this loader takes slice `shard` of `shards` equal slices
  // of every batch (rows [shard * B / shards, (shard + 1) * B / shards));
  // the batch size must divide by `shards`.
  int shard = 0;
  int shards = 1;
};

// Hands out batches [start_step, end_step) of `plan` in step order. The
// dataset and the plan must outlive the loader. Throws refinery::Error
// (kInvalidArgument) for bad options or steps, and for plan items outside
// the dataset. Destruction or stop() ends the threads promptly: workers
// finish only the image in their hands, and queued work is dropped.
class TrainingDataLoader {
 public:
  TrainingDataLoader(const CaptionDataset& dataset, const EpochPlan& plan, int64_t start_step, int64_t end_step,
                     DataLoaderOptions options);
  ~TrainingDataLoader();
  TrainingDataLoader(const TrainingDataLoader&) = delete;
  TrainingDataLoader& operator=(const TrainingDataLoader&) = delete;

  // The next batch, blocking until it is ready; nullopt after end_step - 1
  // and after stop(). For one consumer thread at a time.
  std::optional<TrainingBatch> next();
  // Safe from any thread, also while another is blocked in next().
  void stop();

 private:
  struct Pending;  // a batch in preparation
  struct Task {
    std::shared_ptr<Pending> batch;
    size_t row;
  };

  void enqueue_step_locked(int64_t step);
  void worker_loop();

  const CaptionDataset& dataset_;
  const EpochPlan& plan_;
  const int64_t end_step_;
  const DataLoaderOptions options_;
  const ImagePreprocessor preprocessor_;

  std::mutex mu_;
  std::condition_variable work_cv_;  // workers: a task arrived, or stop
  std::condition_variable done_cv_;  // consumer: a batch finished, or stop
  bool stopped_ = false;
  int64_t next_step_to_enqueue_;
  std::deque<std::shared_ptr<Pending>> pending_;  // in step order
  std::deque<Task> tasks_;                        // in step order
  std::vector<std::thread> workers_;
};

// Decodes and preprocesses images (e.g. for evaluation) on `workers`
// threads (0 = hardware_concurrency). Images that fail are left out and
// reported in `failed` as "path: reason"; `kept` receives the indices of the
// rows returned. Returns [n_ok, 3, S, S] float32.
at::Tensor load_images(const std::vector<std::string>& paths, const ImagePreprocessorOptions& preprocess, int workers,
                       std::vector<int64_t>* kept, std::vector<std::string>* failed);

}  // namespace refinery
