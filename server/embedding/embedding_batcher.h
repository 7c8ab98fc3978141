// Dynamic batching of embedding work for one (model, modality): calls queue
// their inputs; a worker forms batches of up to max_batch items, waiting at
// most max_wait (by default a tenth of the measured pass time of this lane,
// wait_budget.h) after the first queued call for company, runs one forward
// pass and hands each call its rows. With `passes` workers, that many
// batches of the lane can run side by side (as the device's slots allow),
// each pass on `pass_threads` intra-op threads. The queue is bounded (RESOURCE_EXHAUSTED
// at once when full), and calls whose deadline passed or whose client went
// away are dropped before any compute is spent on them.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "server/embedding/wait_budget.h"
#include "server/runtime/device_slots.h"

namespace refinery {

class ModelRegistry;

enum class Modality { kText, kImage };
const char* modality_name(Modality m);

using Clock = std::chrono::steady_clock;

// What a call brings besides its inputs.
struct CallControl {
  Clock::time_point deadline = Clock::time_point::max();
  std::function<bool()> cancelled;  // may be empty
};

struct BatchResult {
  at::Tensor embeddings;  // [n, D] float32 on CPU, raw projected features
  double logit_scale = 0;  // exp(logit_scale) of the weights that computed them
  double queue_ms = 0;
  double inference_ms = 0;
  int batch_size = 0;
};

struct BatchStats {  // reported once per forward pass
  const std::string* model_ref = nullptr;  // "name@version", valid during the callback
  Modality modality;
  int items = 0;
  int calls = 0;
  double inference_ms = 0;
  double wait_budget_ms = 0;  // what the next batch may wait for company
};

struct EmbeddingBatcherOptions {
  int max_batch = 32;
  double max_wait_ms = -1;  // -1: adaptive, a tenth of the lane's measured pass time (wait_budget.h)
  int max_queue_items = 4096;
  bool bf16 = false;  // forward passes under bf16 autocast
  int passes = 1;        // worker threads: batches of this lane that may run at once
  int pass_threads = 0;  // intra-op threads of each pass; 0: the process's count
  // A batch of a single call while no other pass runs on the device uses
  // this many instead (0: pass_threads): a lone caller gets every core.
  int lone_pass_threads = 0;
};

class EmbeddingBatcher {
 public:
  // `device_slots` bounds the forward passes running at once across all
  // batchers on one device (device_slots.h).
  EmbeddingBatcher(std::string model_ref, Modality modality, EmbeddingBatcherOptions options, ModelRegistry& registry,
                   DeviceSlots& device_slots, std::function<void(const BatchStats&)> on_batch = {});
  ~EmbeddingBatcher();  // drains: queued calls still get answers

  // inputs: tokens [n, L] int32 (text) or pixels [n, 3, S, S] float (image).
  // A full queue is RESOURCE_EXHAUSTED (retry later); a call larger than the
  // whole queue can never fit and is INVALID_ARGUMENT (split it).
  std::future<BatchResult> submit(at::Tensor inputs, CallControl control);
  int queued_items() const;
  bool idle() const;  // nothing queued and no batch running
  void stop();  // finish what is queued, accept nothing more

 private:
  struct Pending {
    at::Tensor inputs;
    CallControl control;
    Clock::time_point enqueued;
    std::promise<BatchResult> promise;
  };
  void loop();
  void run_batch(std::vector<std::unique_ptr<Pending>>& batch);
  double wait_budget_ms() const;  // caller holds mu_

  const std::string model_ref_;
  const Modality modality_;
  const EmbeddingBatcherOptions options_;
  ModelRegistry& registry_;
  DeviceSlots& device_slots_;
  std::function<void(const BatchStats&)> on_batch_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  int queued_items_ = 0;
  int running_ = 0;  // batches being computed
  bool stopping_ = false;
  WaitBudget wait_budget_;  // guarded by mu_: every worker's passes teach it
  std::vector<std::thread> workers_;
};

}  // namespace refinery
