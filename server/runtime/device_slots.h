// How many forward passes may run on one device at once. On a GPU that is
// one: concurrent passes only fight over the same SMs. On a CPU it is
// --parallel-passes, each pass on its share of the cores (the batcher sets
// its threads' intra-op count): small passes on a few threads waste less
// time in thread synchronisation than one pass on all of them, and one
// pass's serial parts and batch formation leave the cores to the other.
#pragma once

#include <condition_variable>
#include <mutex>

namespace refinery {

class DeviceSlots {
 public:
  explicit DeviceSlots(int slots);  // throws invalid_argument below 1
  DeviceSlots(const DeviceSlots&) = delete;
  DeviceSlots& operator=(const DeviceSlots&) = delete;

  // A held slot, given back when it goes out of scope.
  class Lease {
   public:
    explicit Lease(DeviceSlots& slots) : slots_(&slots) {}
    Lease(Lease&& other) noexcept : slots_(other.slots_) { other.slots_ = nullptr; }
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (slots_ != nullptr) slots_->release();
    }

   private:
    DeviceSlots* slots_;
  };

  Lease acquire();  // waits for a free slot
  int size() const { return slots_; }
  int in_use() const;

 private:
  void release();

  const int slots_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int used_ = 0;
};

}  // namespace refinery
