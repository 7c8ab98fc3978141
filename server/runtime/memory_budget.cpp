#include "server/runtime/memory_budget.h"

#include <algorithm>
#include <utility>

#include "core/base/error.h"

namespace refinery {

namespace {
std::string mib(int64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }
}  // namespace

MemoryBudget::MemoryBudget(int64_t bytes) : capacity_(bytes) {
  if (bytes <= 0) throw invalid_argument("a memory budget must be positive, got " + std::to_string(bytes) + " bytes");
}

MemoryBudget::Lease MemoryBudget::acquire(int64_t bytes, const std::string& what) {
  bytes = std::max<int64_t>(bytes, 0);
  if (bytes > capacity_) {
    throw resource_exhausted(what + " needs " + mib(bytes) + " to decode, more than the whole budget of " +
                             mib(capacity_) + " (--decode-memory-mb)");
  }
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t ticket = next_ticket_++;
  auto granted = [&] { return ticket == serving_ && in_use_ + bytes <= capacity_; };
  if (!granted()) {
    ++waits_;
    freed_.wait(lock, granted);
  }
  ++serving_;
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  lock.unlock();
  freed_.notify_all();  // the next in line may fit beside this one
  return Lease(this, bytes);
}

void MemoryBudget::give_back(int64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ -= bytes;
  }
  freed_.notify_all();
}

int64_t MemoryBudget::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

int64_t MemoryBudget::peak() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

int64_t MemoryBudget::waits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waits_;
}

MemoryBudget::Lease::Lease(Lease&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

MemoryBudget::Lease& MemoryBudget::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

MemoryBudget::Lease::~Lease() { release(); }

void MemoryBudget::Lease::release() {
  if (budget_ != nullptr) budget_->give_back(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

}  // namespace refinery
