// MemoryBudget: the bound on what concurrent image decodes hold. What the
// server relies on: leases together never exceed the budget, every lease is
// granted once others end, in the order asked, one larger than the whole budget is refused at
// once naming what asked.
#include "server/runtime/memory_budget.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "core/base/error.h"

namespace refinery {
namespace {

TEST(MemoryBudget, LeasesTogetherNeverExceedTheBudgetAndAllAreGranted) {
  MemoryBudget budget(1000);
  std::atomic<int64_t> held{0}, over{0}, granted{0};
  // The whole budget is held until some caller has had to wait, so the
  // callers contend however the threads are scheduled (under TSan they
  // could otherwise run one after another and never wait).
  auto blocker = std::make_unique<MemoryBudget::Lease>(budget.acquire(1000, "blocker"));
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const int64_t want = 100 + 97 * ((t + i) % 10);  // 100 .. 973 bytes
        const auto lease = budget.acquire(want, "image");
        if (held += want; held > 1000) ++over;
        std::this_thread::yield();
        held -= want;
        ++granted;
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (budget.waits() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  blocker.reset();
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 8 * 200);
  EXPECT_EQ(over.load(), 0);
  EXPECT_LE(budget.peak(), 1000);
  EXPECT_GT(budget.waits(), 0);
  EXPECT_EQ(budget.in_use(), 0);
}

TEST(MemoryBudget, ALeaseWaitsForRoomAndIsGrantedWhenAnotherEnds) {
  MemoryBudget budget(100);
  auto first = budget.acquire(80, "a");
  std::atomic<bool> got{false};
  std::thread second([&] {
    const auto lease = budget.acquire(50, "b");
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(got.load());
  first = MemoryBudget::Lease();  // ends the first lease
  second.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(budget.in_use(), 0);
}

TEST(MemoryBudget, LeasesAreGrantedInTheOrderAskedSoALargeOneIsNotStarved) {
  MemoryBudget budget(100);
  auto held = budget.acquire(60, "first");
  std::atomic<int> order{0};
  std::atomic<int> large_at{-1}, small_at{-1};
  std::thread large([&] {
    // Waits for "first" to end; "small" cannot fit beside it, so the order
    // recorded here is the order granted.
    const auto lease = budget.acquire(95, "large");
    large_at = order++;
  });
  while (budget.waits() < 1) std::this_thread::yield();
  std::thread small([&] {
    // Would fit beside "first" now, but asked after "large": waits its turn.
    const auto lease = budget.acquire(10, "small");
    small_at = order++;
  });
  // Until "small" waits too (or, were it served out of turn, 2 s).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (budget.waits() < 2 && small_at < 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(small_at.load(), -1) << "served before the larger lease asked earlier";
  held = MemoryBudget::Lease();
  large.join();
  small.join();
  EXPECT_EQ(large_at.load(), 0);
  EXPECT_EQ(small_at.load(), 1);
}

TEST(MemoryBudget, MoreThanTheWholeBudgetIsRefusedNamingWhatAsked) {
  MemoryBudget budget(3 << 20);
  try {
    budget.acquire((3 << 20) + 1, "images[2] (huge.png)");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_NE(std::string(e.what()).find("images[2] (huge.png) needs 4 MiB"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("budget of 3 MiB"), std::string::npos) << e.what();
  }
  EXPECT_EQ(budget.in_use(), 0);
  EXPECT_THROW(MemoryBudget(0), Error);
}

}  // namespace
}  // namespace refinery
