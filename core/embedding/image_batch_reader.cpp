#include "core/embedding/image_batch_reader.h"

#include <torch/torch.h>

#include <algorithm>
#include <exception>

#include "core/base/error.h"
#include "core/image/image_decoder.h"

namespace refinery {

struct ImageBatchReader::Batch {
  at::Tensor pixels;
  int64_t remaining = 0;
  size_t error_row = SIZE_MAX;  // the first failed row, in path order
  std::exception_ptr error;
};

ImageBatchReader::ImageBatchReader(std::vector<std::string> paths, ImageBatchReaderOptions options)
    : paths_(std::move(paths)),
      options_(options),
      preprocessor_(options.preprocess),
      batch_count_(options.batch_size > 0
                       ? (static_cast<int64_t>(paths_.size()) + options.batch_size - 1) / options.batch_size
                       : 0) {
  if (options_.batch_size <= 0) {
    throw invalid_argument("image batch size must be positive, got " + std::to_string(options_.batch_size));
  }
  if (options_.prefetch_batches < 0) {
    throw invalid_argument("prefetch batches must not be negative, got " + std::to_string(options_.prefetch_batches));
  }
  batches_.resize(static_cast<size_t>(batch_count_));
  int n = options_.workers;
  if (n <= 0) n = std::max(1u, std::thread::hardware_concurrency());
  n = static_cast<int>(std::min<size_t>(static_cast<size_t>(n), paths_.size()));
  try {
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    stop();
    throw;
  }
}

ImageBatchReader::~ImageBatchReader() { stop(); }

void ImageBatchReader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

int64_t ImageBatchReader::batch_rows(int64_t batch) const {
  const int64_t begin = batch * options_.batch_size;
  return std::min<int64_t>(options_.batch_size, static_cast<int64_t>(paths_.size()) - begin);
}

void ImageBatchReader::worker_loop() {
  const int64_t s = options_.preprocess.size;
  for (;;) {
    size_t image = 0;
    Batch* batch = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // The window: the batch the consumer waits for and prefetch_batches after it.
      auto limit = [&] {
        return std::min(paths_.size(),
                        static_cast<size_t>((consumed_ + 1 + options_.prefetch_batches) * options_.batch_size));
      };
      work_cv_.wait(lock, [&] { return stopped_ || next_image_ >= paths_.size() || next_image_ < limit(); });
      if (stopped_ || next_image_ >= paths_.size()) return;
      image = next_image_++;
      const size_t b = image / static_cast<size_t>(options_.batch_size);
      if (!batches_[b]) {
        auto fresh = std::make_unique<Batch>();
        const int64_t rows = batch_rows(static_cast<int64_t>(b));
        fresh->pixels = torch::empty({rows, 3, s, s}, torch::kFloat32);
        fresh->remaining = rows;
        batches_[b] = std::move(fresh);
      }
      batch = batches_[b].get();
    }
    const size_t row = image % static_cast<size_t>(options_.batch_size);
    std::exception_ptr error;
    try {
      preprocessor_.preprocess(decode_image_file(paths_[image]), batch->pixels.data_ptr<float>() + row * 3 * s * s);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (error && row < batch->error_row) {
        batch->error_row = row;
        batch->error = error;
      }
      if (--batch->remaining == 0) done_cv_.notify_all();
    }
  }
}

at::Tensor ImageBatchReader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  if (consumed_ >= batch_count_) return {};
  const size_t b = static_cast<size_t>(consumed_);
  done_cv_.wait(lock, [&] { return stopped_ || (batches_[b] && batches_[b]->remaining == 0); });
  if (stopped_) return {};
  std::unique_ptr<Batch> batch = std::move(batches_[b]);
  ++consumed_;
  lock.unlock();
  work_cv_.notify_all();
  if (batch->error) std::rethrow_exception(batch->error);
  return batch->pixels;
}

}  // namespace refinery
