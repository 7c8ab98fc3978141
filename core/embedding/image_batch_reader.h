// Image files to batches of model-ready pixels, decoded and preprocessed on
// worker threads ahead of the consumer, so the model runs while the next
// batches decode. Batches come out in path order; a batch's images are spread
// over all workers, so the batch the consumer waits for finishes first.
//
// Strict: an image that fails to decode fails its batch (next() throws the
// decoder's error, which names the file). Evaluation wants that: a skipped
// image would change the benchmark's denominator.
#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/image/image_preprocessor.h"

namespace refinery {

struct ImageBatchReaderOptions {
  int batch_size = 64;
  int workers = 0;           // decode threads; 0 = std::thread::hardware_concurrency()
  int prefetch_batches = 2;  // batches decoded ahead of the one the consumer holds
  ImagePreprocessorOptions preprocess;
};

class ImageBatchReader {
 public:
  // Starts the workers. INVALID_ARGUMENT for a non-positive batch size or a
  // negative prefetch.
  ImageBatchReader(std::vector<std::string> paths, ImageBatchReaderOptions options);
  ~ImageBatchReader();  // stops and joins the workers
  ImageBatchReader(const ImageBatchReader&) = delete;
  ImageBatchReader& operator=(const ImageBatchReader&) = delete;

  // The next batch, [b, 3, S, S] float32 (b = batch_size except the last),
  // blocking until it is ready; an undefined tensor after the last one.
  // Throws the first (in path order) decode error of the batch. One
  // consumer thread at a time.
  at::Tensor next();

  int64_t batch_count() const { return batch_count_; }
  int64_t batch_rows(int64_t batch) const;

 private:
  struct Batch;
  void worker_loop();
  void stop();

  const std::vector<std::string> paths_;
  const ImageBatchReaderOptions options_;
  const ImagePreprocessor preprocessor_;
  const int64_t batch_count_;

  std::mutex mu_;
  std::condition_variable work_cv_;  // workers: the window moved, or stop
  std::condition_variable done_cv_;  // consumer: an image finished
  bool stopped_ = false;
  size_t next_image_ = 0;   // the next image a worker takes
  int64_t consumed_ = 0;    // batches handed out by next()
  std::vector<std::unique_ptr<Batch>> batches_;  // allocated when their first image is taken
  std::vector<std::thread> workers_;
};

}  // namespace refinery
