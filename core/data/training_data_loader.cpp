#include "core/data/training_data_loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <utility>

#include "core/base/error.h"
#include "core/image/image_decoder.h"
#include "core/text/bpe_tokenizer.h"

namespace refinery {
namespace {

int resolve_workers(int workers) {
  if (workers > 0) return workers;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

// "path: reason", without the decoder's own "image 'path': " prefix.
std::string failure_text(const std::string& path, const std::exception& e) {
  std::string reason = e.what();
  const std::string prefix = "image '" + path + "': ";
  if (reason.compare(0, prefix.size(), prefix) == 0) reason.erase(0, prefix.size());
  return path + ": " + reason;
}

}  // namespace

struct TrainingDataLoader::Pending {
  int64_t step = 0;
  int epoch = 0;
  std::vector<BatchItem> rows;
  at::Tensor pixels, tokens;
  float* pixel_data = nullptr;    // pixels' storage, row r at r * 3 * S * S
  int64_t* token_data = nullptr;  // tokens' storage, row r at r * context_length
  std::vector<std::string> errors;  // per row; empty when it worked
  size_t remaining = 0;             // rows not yet done
};

TrainingDataLoader::TrainingDataLoader(const CaptionDataset& dataset, const EpochPlan& plan, int64_t start_step, int64_t end_step,
                                       DataLoaderOptions options)
    : dataset_(dataset),
      plan_(plan),
      end_step_(end_step),
      options_(std::move(options)),
      preprocessor_(options_.preprocess),
      next_step_to_enqueue_(start_step) {
  if (options_.workers < 0) throw invalid_argument("data loader workers " + std::to_string(options_.workers) + " must be >= 0");
  if (options_.prefetch_batches < 0)
    throw invalid_argument("data loader prefetch_batches " + std::to_string(options_.prefetch_batches) + " must be >= 0");
  if (options_.context_length < 2)
    throw invalid_argument("data loader context_length " + std::to_string(options_.context_length) + " must be >= 2");
  if (options_.shards < 1 || options_.shard < 0 || options_.shard >= options_.shards)
    throw invalid_argument("data loader shard " + std::to_string(options_.shard) + " of " + std::to_string(options_.shards) +
                           " is not a shard index below the shard count");
  if (plan_.batch_size() % options_.shards != 0)
    throw invalid_argument("batch size " + std::to_string(plan_.batch_size()) + " does not divide into " +
                           std::to_string(options_.shards) + " equal shards");
  if (start_step < 0 || end_step < start_step)
    throw invalid_argument("data loader steps [" + std::to_string(start_step) + ", " + std::to_string(end_step) + ") are not a range of steps >= 0");
  for (int64_t item : plan_.train_items())
    if (item < 0 || item >= static_cast<int64_t>(dataset_.items.size()))
      throw invalid_argument("training plan item " + std::to_string(item) + " is outside data set " + dataset_.spec + " (" +
                             std::to_string(dataset_.items.size()) + " items)");
  BpeTokenizer::default_instance();  // load the merges here, where an error can reach the caller

  {
    std::lock_guard<std::mutex> lock(mu_);
    while (static_cast<int64_t>(pending_.size()) < options_.prefetch_batches && next_step_to_enqueue_ < end_step_)
      enqueue_step_locked(next_step_to_enqueue_++);
  }
  try {
    const int n = resolve_workers(options_.workers);
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    stop();
    throw;
  }
}

TrainingDataLoader::~TrainingDataLoader() { stop(); }

void TrainingDataLoader::stop() {
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    tasks_.clear();
    pending_.clear();
    workers.swap(workers_);
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  for (std::thread& t : workers)
    if (t.joinable()) t.join();
}

void TrainingDataLoader::enqueue_step_locked(int64_t step) {
  auto batch = std::make_shared<Pending>();
  batch->step = step;
  batch->epoch = plan_.epoch_of(step);
  batch->rows = plan_.batch(step);
  if (options_.shards > 1) {
    const size_t per = batch->rows.size() / static_cast<size_t>(options_.shards);
    const auto first = batch->rows.begin() + static_cast<std::ptrdiff_t>(per * static_cast<size_t>(options_.shard));
    batch->rows = std::vector<BatchItem>(first, first + static_cast<std::ptrdiff_t>(per));
  }
  for (const BatchItem& r : batch->rows) {
    const CaptionedImage& item = dataset_.items.at(static_cast<size_t>(r.item));
    if (r.caption < 0 || static_cast<size_t>(r.caption) >= item.captions.size())
      throw invalid_argument("training plan step " + std::to_string(step) + " asks for caption " + std::to_string(r.caption) + " of " +
                             item.image_path + ", which has " + std::to_string(item.captions.size()));
  }
  const int64_t b = static_cast<int64_t>(batch->rows.size());
  const int64_t s = options_.preprocess.size;
  batch->pixels = torch::empty({b, 3, s, s}, torch::kFloat32);
  batch->tokens = torch::zeros({b, options_.context_length}, torch::kInt64);
  batch->pixel_data = batch->pixels.data_ptr<float>();
  batch->token_data = batch->tokens.data_ptr<int64_t>();
  batch->errors.assign(batch->rows.size(), std::string());
  batch->remaining = batch->rows.size();
  pending_.push_back(batch);
  for (size_t r = 0; r < batch->rows.size(); ++r) tasks_.push_back(Task{batch, r});
  work_cv_.notify_all();
}

void TrainingDataLoader::worker_loop() {
  const BpeTokenizer& tokenizer = BpeTokenizer::default_instance();
  const int64_t pixels_per_row = 3 * static_cast<int64_t>(options_.preprocess.size) * options_.preprocess.size;
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return stopped_ || !tasks_.empty(); });
      if (stopped_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    Pending& batch = *task.batch;
    const BatchItem& row = batch.rows[task.row];
    const CaptionedImage& item = dataset_.items[static_cast<size_t>(row.item)];
    std::string error;
    try {
      const DecodedImage img = decode_image_file(item.image_path);
      preprocessor_.preprocess(img, batch.pixel_data + static_cast<int64_t>(task.row) * pixels_per_row);
      const std::vector<int32_t> ids = tokenizer.tokenize(item.captions[static_cast<size_t>(row.caption)], options_.context_length, true);
      std::copy(ids.begin(), ids.end(), batch.token_data + static_cast<int64_t>(task.row) * options_.context_length);
    } catch (const std::exception& e) {
      error = failure_text(item.image_path, e);
    }
    std::lock_guard<std::mutex> lock(mu_);
    batch.errors[task.row] = std::move(error);
    if (--batch.remaining == 0) done_cv_.notify_all();
  }
}

std::optional<TrainingBatch> TrainingDataLoader::next() {
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<Pending> ready;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopped_) return std::nullopt;
    if (pending_.empty()) {
      if (next_step_to_enqueue_ >= end_step_) return std::nullopt;
      enqueue_step_locked(next_step_to_enqueue_++);
    }
    std::shared_ptr<Pending> front = pending_.front();
    done_cv_.wait(lock, [&] { return stopped_ || front->remaining == 0; });
    if (stopped_) return std::nullopt;
    pending_.pop_front();
    while (static_cast<int64_t>(pending_.size()) < options_.prefetch_batches && next_step_to_enqueue_ < end_step_)
      enqueue_step_locked(next_step_to_enqueue_++);
    ready = std::move(front);
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  TrainingBatch out;
  out.step = ready->step;
  out.epoch = ready->epoch;
  out.data_seconds = waited;
  std::vector<int64_t> kept;
  for (size_t r = 0; r < ready->rows.size(); ++r) {
    if (ready->errors[r].empty()) {
      kept.push_back(static_cast<int64_t>(r));
      out.items.push_back(ready->rows[r].item);
    } else {
      out.skipped.push_back(ready->errors[r]);
    }
  }
  if (kept.size() == ready->rows.size()) {
    out.pixels = ready->pixels;
    out.tokens = ready->tokens;
  } else {
    const at::Tensor index = torch::tensor(kept, torch::kInt64);
    out.pixels = ready->pixels.index_select(0, index);
    out.tokens = ready->tokens.index_select(0, index);
  }
  return out;
}

at::Tensor load_images(const std::vector<std::string>& paths, const ImagePreprocessorOptions& preprocess, int workers,
                       std::vector<int64_t>* kept, std::vector<std::string>* failed) {
  const ImagePreprocessor preprocessor(preprocess);
  const int64_t n = static_cast<int64_t>(paths.size());
  const int64_t s = preprocess.size;
  at::Tensor pixels = torch::empty({n, 3, s, s}, torch::kFloat32);
  float* data = pixels.data_ptr<float>();
  std::vector<std::string> errors(paths.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < paths.size(); i = next++) {
      try {
        preprocessor.preprocess(decode_image_file(paths[i]), data + static_cast<int64_t>(i) * 3 * s * s);
      } catch (const std::exception& e) {
        errors[i] = failure_text(paths[i], e);
      }
    }
  };
  const size_t threads = std::min(static_cast<size_t>(resolve_workers(workers)), paths.size());
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) pool.emplace_back(work);
    for (std::thread& t : pool) t.join();
  }

  std::vector<int64_t> ok;
  if (failed) failed->clear();
  for (size_t i = 0; i < paths.size(); ++i) {
    if (errors[i].empty()) {
      ok.push_back(static_cast<int64_t>(i));
    } else if (failed) {
      failed->push_back(errors[i]);
    }
  }
  if (kept) *kept = ok;
  if (static_cast<int64_t>(ok.size()) == n) return pixels;
  return pixels.index_select(0, torch::tensor(ok, torch::kInt64));
}

}  // namespace refinery
