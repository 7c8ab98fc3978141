// WorkerPool: what a caller of run() relies on when many gRPC threads share
// one pool: every item runs once, the call returns only when its own items
// are done, errors name the lowest failing item, and no more items run at
// once than the pool has threads (the bound on concurrent image decodes).
#include "server/runtime/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace refinery {
namespace {

TEST(WorkerPool, ManyCallersEachGetAllTheirItemsDone) {
  WorkerPool pool(3);
  constexpr int kCallers = 8, kItems = 50;
  std::vector<std::vector<int>> results(kCallers, std::vector<int>(kItems, 0));
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int round = 1; round <= 20; ++round) {
        pool.run(kItems, [&](size_t i) { results[c][i] += round; });
        // run() returned: every item of this round is in, none of the next.
        for (int i = 0; i < kItems; ++i) ASSERT_EQ(results[c][i], round * (round + 1) / 2);
      }
    });
  }
  for (auto& t : callers) t.join();
}

TEST(WorkerPool, NoMoreItemsRunAtOnceThanThreadsEvenForSingleItems) {
  WorkerPool pool(2);
  std::atomic<int> running{0}, peak{0};
  auto work = [&](size_t) {
    const int now = ++running;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    --running;
  };
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&, c] {
      for (int r = 0; r < 10; ++r) pool.run(c % 2 ? 1 : 4, work);
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(peak.load(), 2);
}

TEST(WorkerPool, EveryItemRunsAndTheLowestFailureIsRethrown) {
  WorkerPool pool(4);
  std::atomic<int> ran{0};
  try {
    pool.run(40, [&](size_t i) {
      ++ran;
      if (i == 7 || i == 31) throw std::runtime_error("item " + std::to_string(i));
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "item 7");
  }
  EXPECT_EQ(ran.load(), 40);
}

TEST(WorkerPool, StopsCleanlyRightAfterWork) {
  for (int i = 0; i < 50; ++i) {
    WorkerPool pool(4);
    std::atomic<int> ran{0};
    pool.run(8, [&](size_t) { ++ran; });
    EXPECT_EQ(ran.load(), 8);
  }
}

}  // namespace
}  // namespace refinery
