// Our AdamW against LibTorch's own torch::optim::AdamW: the same updates,
// step for step, for the same gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/train/adamw.h"

namespace refinery {
namespace {

TEST(AdamWTest, MatchesLibTorchsAdamWStepForStep) {
  torch::manual_seed(3);
  torch::Tensor a0 = torch::randn({4, 3}), b0 = torch::randn({5});
  torch::Tensor a1 = a0.clone().set_requires_grad(true), b1 = b0.clone().set_requires_grad(true);
  torch::Tensor a2 = a0.clone().set_requires_grad(true), b2 = b0.clone().set_requires_grad(true);
  const double lr = 1e-2, wd = 0.1;
  AdamW ours({{"a", a1}, {"b", b1}}, AdamWOptions().weight_decay(wd).beta1(0.8).beta2(0.99).eps(1e-6));
  torch::optim::AdamW theirs({a2, b2},
                             torch::optim::AdamWOptions(lr).weight_decay(wd).betas({0.8, 0.99}).eps(1e-6));
  for (int step = 0; step < 6; ++step) {
    torch::Tensor ga = torch::randn({4, 3}), gb = torch::randn({5});
    if (step == 3) gb = torch::Tensor();  // a parameter without gradient this step is left alone
    a1.mutable_grad() = ga.clone();
    a2.mutable_grad() = ga.clone();
    b1.mutable_grad() = gb.defined() ? gb.clone() : torch::Tensor();
    b2.mutable_grad() = gb.defined() ? gb.clone() : torch::Tensor();
    ours.step(lr);
    theirs.step();
    EXPECT_TRUE(torch::allclose(a1, a2, 1e-6, 1e-7)) << "step " << step;
    EXPECT_TRUE(torch::allclose(b1, b2, 1e-6, 1e-7)) << "step " << step;
  }
  EXPECT_EQ(ours.steps(), 6);
  EXPECT_FALSE(torch::allclose(a1, a0));
}

TEST(AdamWTest, ZeroGradDropsGradients) {
  torch::Tensor a = torch::ones({2}).set_requires_grad(true);
  AdamW opt({{"a", a}});
  a.mutable_grad() = torch::ones({2});
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  opt.step(0.1);  // nothing to do: no gradient
  EXPECT_TRUE(torch::equal(a, torch::ones({2})));
}

}  // namespace
}  // namespace refinery
