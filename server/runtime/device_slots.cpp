#include "server/runtime/device_slots.h"

#include <string>

#include "core/base/error.h"

namespace refinery {

DeviceSlots::DeviceSlots(int slots) : slots_(slots) {
  if (slots < 1) throw invalid_argument("a device needs at least one pass slot, got " + std::to_string(slots));
}

DeviceSlots::Lease DeviceSlots::acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return used_ < slots_; });
  ++used_;
  return Lease(*this);
}

void DeviceSlots::release() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --used_;
  }
  cv_.notify_one();
}

int DeviceSlots::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

}  // namespace refinery
