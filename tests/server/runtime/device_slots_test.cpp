// DeviceSlots: at most N forward passes on a device at once, and every
// waiter gets its turn.
#include "server/runtime/device_slots.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "core/base/error.h"

namespace refinery {
namespace {

// `threads` callers each take a slot `rounds` times; returns the most that
// were ever held together.
int most_held_at_once(DeviceSlots& slots, int threads, int rounds) {
  std::atomic<int> held{0}, most{0}, done{0};
  // Every slot is held until the callers have started, so they contend
  // however the threads are scheduled.
  std::vector<DeviceSlots::Lease> blockers;
  for (int i = 0; i < slots.size(); ++i) blockers.push_back(slots.acquire());
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) {
        const auto lease = slots.acquire();
        const int now = ++held;
        for (int seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        --held;
      }
      ++done;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(done.load(), 0) << "a caller got a slot while all were held";
  blockers.clear();
  for (auto& c : callers) c.join();
  EXPECT_EQ(done.load(), threads);
  EXPECT_EQ(slots.in_use(), 0);
  return most.load();
}

TEST(DeviceSlots, OneSlotRunsOnePassAtATime) {
  DeviceSlots slots(1);
  EXPECT_EQ(most_held_at_once(slots, 6, 50), 1);
}

TEST(DeviceSlots, TwoSlotsRunTwoPassesAtOnceAndNeverThree) {
  DeviceSlots slots(2);
  const int most = most_held_at_once(slots, 6, 50);
  EXPECT_LE(most, 2);
  // Six callers sleeping while they hold a slot: with two slots, two are
  // held together at some point (a broken count that serialised them would
  // leave this at 1).
  EXPECT_EQ(most, 2);
}

TEST(DeviceSlots, ALeaseMovedOutOfScopeIsGivenBackOnce) {
  DeviceSlots slots(2);
  {
    auto a = slots.acquire();
    auto b = std::move(a);
    EXPECT_EQ(slots.in_use(), 1);
  }
  EXPECT_EQ(slots.in_use(), 0);
}

TEST(DeviceSlots, FewerThanOneSlotIsRefused) {
  EXPECT_THROW(DeviceSlots(0), Error);
}

}  // namespace
}  // namespace refinery
