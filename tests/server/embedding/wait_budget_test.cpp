#include "server/embedding/wait_budget.h"

#include <gtest/gtest.h>

namespace refinery {
namespace {

TEST(WaitBudgetTest, NoWaitBeforeTheFirstPass) {
  WaitBudget b;
  EXPECT_EQ(b.ms(), 0);
}

TEST(WaitBudgetTest, ATenthOfThePassTime) {
  WaitBudget cpu;
  for (int i = 0; i < 5; ++i) cpu.observe_pass(1500);  // ViT-B/32, batch of 32, 2 cores
  EXPECT_DOUBLE_EQ(cpu.ms(), 150);
  WaitBudget gpu;
  gpu.observe_pass(4);
  EXPECT_DOUBLE_EQ(gpu.ms(), 0.4);
}

TEST(WaitBudgetTest, FollowsTheRecentPasses) {
  // The lane gets 4x slower (another model's passes share the cores): after
  // 30 passes the budget is within 5% of the new one.
  WaitBudget b;
  for (int i = 0; i < 100; ++i) b.observe_pass(40);
  for (int i = 0; i < 30; ++i) b.observe_pass(160);
  EXPECT_NEAR(b.ms(), 16, 0.8);
  EXPECT_GT(b.ms(), 4);
}

}  // namespace
}  // namespace refinery
