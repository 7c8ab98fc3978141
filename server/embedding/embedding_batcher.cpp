#include "server/embedding/embedding_batcher.h"

#include <torch/torch.h>

#include <optional>

#include "core/base/error.h"
#include "core/runtime/autocast_guard.h"
#include "core/runtime/torch_runtime.h"
#include "server/models/model_registry.h"
#include "server/runtime/log.h"

namespace refinery {

const char* modality_name(Modality m) { return m == Modality::kText ? "text" : "image"; }

namespace {
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

EmbeddingBatcher::EmbeddingBatcher(std::string model_ref, Modality modality, EmbeddingBatcherOptions options,
                                   ModelRegistry& registry, DeviceSlots& device_slots,
                                   std::function<void(const BatchStats&)> on_batch)
    : model_ref_(std::move(model_ref)),
      modality_(modality),
      options_(options),
      registry_(registry),
      device_slots_(device_slots),
      on_batch_(std::move(on_batch)) {
  if (options_.passes < 1) throw invalid_argument("a batcher needs at least one pass, got " + std::to_string(options_.passes));
  for (int i = 0; i < options_.passes; ++i) workers_.emplace_back([this] { loop(); });
}

EmbeddingBatcher::~EmbeddingBatcher() { stop(); }

void EmbeddingBatcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
}

int EmbeddingBatcher::queued_items() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_items_;
}

bool EmbeddingBatcher::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.empty() && running_ == 0;
}

std::future<BatchResult> EmbeddingBatcher::submit(at::Tensor inputs, CallControl control) {
  auto p = std::make_unique<Pending>();
  p->inputs = std::move(inputs);
  p->control = std::move(control);
  p->enqueued = Clock::now();
  auto future = p->promise.get_future();
  const int n = static_cast<int>(p->inputs.size(0));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw Error(ErrorCode::kFailedPrecondition, "the server is shutting down");
    if (n > options_.max_queue_items) {
      throw invalid_argument(std::string("a call of ") + std::to_string(n) + " " + modality_name(modality_) +
                             " items is larger than the whole queue of " + model_ref_ + " (" +
                             std::to_string(options_.max_queue_items) +
                             " items, --max-queue-items); split it into calls of at most that many");
    }
    if (queued_items_ + n > options_.max_queue_items) {
      throw resource_exhausted(std::string("the ") + modality_name(modality_) + " queue of " + model_ref_ + " is full (" +
                               std::to_string(queued_items_) + " items queued, limit " +
                               std::to_string(options_.max_queue_items) + "); retry later");
    }
    queued_items_ += n;
    queue_.push_back(std::move(p));
  }
  cv_.notify_one();
  return future;
}

double EmbeddingBatcher::wait_budget_ms() const {
  return options_.max_wait_ms >= 0 ? options_.max_wait_ms : wait_budget_.ms();
}

void EmbeddingBatcher::loop() {
  // bf16: one autocast scope for the thread's life, around every batch's
  // own. Autocast keeps its bf16 copies of the weights until its outermost
  // scope ends; a scope per batch cast every weight again for each batch
  // (ViT-B/32 under 32 callers: 29.7 images/s against 47.9 for the raw
  // forward, which keeps one scope). The copies go when the lane does; the
  // cache is per thread, so each of a lane's workers holds its own.
  std::optional<AutocastGuard> keep_casts;
  if (options_.bf16) keep_casts.emplace(resolve_device(registry_.device()).type(), true);
  // This worker's own view: when its last batch ended, and how many calls
  // it then expected back (those it served come back; the other workers'
  // come back to them).
  Clock::time_point last_batch_end{};
  int expected_calls = 0;  // calls likely in flight after the last batch
  for (;;) {
    std::vector<std::unique_ptr<Pending>> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      // Wait for company: until the batch is full, or every caller we expect
      // is queued, or max_wait has passed since the oldest call arrived and
      // since the previous batch ended. Callers served by the batch that just
      // finished send their next call a few ms later; leaving without them
      // makes batches alternate between large and small, which costs
      // throughput. A lone caller is expected alone and does not wait.
      // Waiting holds the device idle: at most a set share of a pass.
      const auto max_wait = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::milli>(wait_budget_ms()));
      const auto flush_at = std::max(queue_.front()->enqueued, last_batch_end) + max_wait;
      cv_.wait_until(lock, flush_at, [&] {
        return stopping_ || queue_.empty() || queued_items_ >= options_.max_batch ||
               (expected_calls > 0 && static_cast<int>(queue_.size()) >= expected_calls);
      });
      if (queue_.empty()) continue;  // another worker took them
      int items = 0;
      while (!queue_.empty()) {
        const int n = static_cast<int>(queue_.front()->inputs.size(0));
        if (!batch.empty() && items + n > options_.max_batch) break;
        items += n;
        queued_items_ -= n;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      ++running_;
    }
    const int served = static_cast<int>(batch.size());
    run_batch(batch);
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
    last_batch_end = Clock::now();
    // Who is likely in flight now: those just served (they come back) and
    // those still queued.
    expected_calls = std::min(options_.max_batch, served + static_cast<int>(queue_.size()));
  }
}

void EmbeddingBatcher::run_batch(std::vector<std::unique_ptr<Pending>>& batch) {
  const auto start = Clock::now();
  // No compute for calls that are gone.
  std::vector<std::unique_ptr<Pending>> live;
  for (auto& p : batch) {
    if (p->control.cancelled && p->control.cancelled()) {
      p->promise.set_exception(std::make_exception_ptr(Error(ErrorCode::kCancelled, "the call was cancelled")));
    } else if (start > p->control.deadline) {
      p->promise.set_exception(std::make_exception_ptr(
          Error(ErrorCode::kDeadlineExceeded, "the deadline passed while the call was queued (" +
                                                  std::to_string(static_cast<int>(ms_between(p->enqueued, start))) + " ms)")));
    } else {
      live.push_back(std::move(p));
    }
  }
  if (live.empty()) return;
  try {
    std::vector<at::Tensor> inputs;
    for (auto& p : live) inputs.push_back(p->inputs);
    at::Tensor output;
    Clock::time_point t0;
    double inference_ms = 0;
    double logit_scale = 0;
    int items = 0;
    std::vector<double> pass_ms;
    {
      auto model = registry_.acquire(model_ref_);  // reloads if it was unloaded meanwhile
      const auto slot = device_slots_.acquire();
      if (options_.pass_threads > 0) {
        // Under load the passes share the cores; a lone call (one call in
        // the batch, no other pass running) gets them all. A call arriving
        // meanwhile starts its pass on its share beside it.
        const bool lone = options_.lone_pass_threads > 0 && live.size() == 1 && device_slots_.in_use() == 1;
        set_this_threads_intra_op_threads(lone ? options_.lone_pass_threads : options_.pass_threads);
      }
      t0 = Clock::now();
      torch::InferenceMode guard;
      const auto device_type = model->model->logit_scale.device();
      AutocastGuard autocast(device_type.type(), options_.bf16);
      logit_scale = model->model->logit_scale.exp().item<double>();
      auto all = inputs.size() == 1 ? inputs[0] : torch::cat(inputs);
      items = static_cast<int>(all.size(0));
      std::vector<at::Tensor> parts;
      // A single call larger than max_batch runs in max_batch chunks.
      for (int64_t i = 0; i < all.size(0); i += options_.max_batch) {
        const auto chunk_start = Clock::now();
        const int64_t n = std::min<int64_t>(options_.max_batch, all.size(0) - i);
        auto chunk = all.narrow(0, i, n).to(device_type);
        auto out = modality_ == Modality::kText ? model->model->encode_text(chunk) : model->model->encode_image(chunk);
        parts.push_back(out.to(torch::kCPU, torch::kFloat));  // waits for the device
        pass_ms.push_back(ms_between(chunk_start, Clock::now()));
      }
      output = parts.size() == 1 ? parts[0] : torch::cat(parts);
      inference_ms = ms_between(t0, Clock::now());
    }
    double budget_ms = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const double ms : pass_ms) wait_budget_.observe_pass(ms);
      budget_ms = wait_budget_ms();
    }
    if (on_batch_) on_batch_({&model_ref_, modality_, items, static_cast<int>(live.size()), inference_ms, budget_ms});
    int64_t row = 0;
    for (auto& p : live) {
      const int64_t n = p->inputs.size(0);
      BatchResult r;
      r.embeddings = live.size() == 1 ? output : output.narrow(0, row, n).clone();
      r.queue_ms = ms_between(p->enqueued, t0);  // includes waiting for the device
      r.inference_ms = inference_ms;
      r.logit_scale = logit_scale;
      r.batch_size = items;
      row += n;
      p->promise.set_value(std::move(r));
    }
  } catch (...) {
    const auto error = std::current_exception();
    for (auto& p : live) p->promise.set_exception(error);
  }
}

}  // namespace refinery
