#include "server/runtime/worker_pool.h"

#include <exception>

namespace refinery {

struct WorkerPool::Job {
  const std::function<void(size_t)>* fn = nullptr;
  std::vector<std::exception_ptr> errors;
  size_t remaining = 0;
  std::mutex mu;
  std::condition_variable done;
};

WorkerPool::WorkerPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::run(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  // Single items go through the queue too: the pool's size is the bound on
  // how many run at once, whatever the number of calling threads.
  Job job;
  job.fn = &fn;
  job.errors.resize(n);
  job.remaining = n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < n; ++i) queue_.emplace_back(&job, i);
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> lock(job.mu);
  job.done.wait(lock, [&] { return job.remaining == 0; });
  for (auto& e : job.errors) {
    if (e) std::rethrow_exception(e);
  }
}

void WorkerPool::loop() {
  for (;;) {
    std::pair<Job*, size_t> item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      item = queue_.front();
      queue_.pop_front();
    }
    Job& job = *item.first;
    try {
      (*job.fn)(item.second);
    } catch (...) {
      job.errors[item.second] = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(job.mu);
    if (--job.remaining == 0) job.done.notify_all();
  }
}

}  // namespace refinery
