// A budget of bytes that concurrent work leases before it allocates: image
// decodes lease what the image's header says its pixels will take, so the
// decodes in flight never hold more than the budget together, however many
// calls arrive at once. Leases are granted in the order asked (first come,
// first served: a large image is not starved by a stream of small ones, and
// waits are bounded by the work ahead); each waits until its turn and until
// its bytes fit. One larger than the whole budget is refused at once.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

namespace refinery {

class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t bytes);  // invalid_argument unless > 0
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Bytes held until destroyed (or moved from).
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    int64_t bytes() const { return bytes_; }

   private:
    friend class MemoryBudget;
    Lease(MemoryBudget* budget, int64_t bytes) : budget_(budget), bytes_(bytes) {}
    void release();
    MemoryBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  // Waits until `bytes` fit beside the leases out. Throws resource_exhausted
  // naming `what` when `bytes` exceed the whole budget.
  Lease acquire(int64_t bytes, const std::string& what);

  int64_t capacity() const { return capacity_; }
  int64_t in_use() const;
  int64_t peak() const;     // the most leased at once so far
  int64_t waits() const;    // leases that had to wait for others to end

 private:
  void give_back(int64_t bytes);

  const int64_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  uint64_t next_ticket_ = 0;  // the turn the next acquire takes
  uint64_t serving_ = 0;      // the turn being granted
  int64_t in_use_ = 0;
  int64_t peak_ = 0;
  int64_t waits_ = 0;
};

}  // namespace refinery
