// A fixed pool of threads for CPU work that must not run on the gRPC
// threads' time alone (image decoding and preprocessing). `run` spreads a
// call's items over the pool and waits for them; every item, a call's only
// one included, runs on the pool, so at most size() items run at once
// however many gRPC threads call.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace refinery {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Calls fn(i) for i in [0, n) on the pool and waits. Every item runs even
  // if some fail; then the exception of the lowest failing index is rethrown,
  // so errors name the first bad item deterministically.
  void run(size_t n, const std::function<void(size_t)>& fn);
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  struct Job;
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Job*, size_t>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace refinery
