// One training step: gradient caching over micro-batches gives the same
// gradient as the whole batch at once, for every method (the losses couple
// all pairs of the batch, so this is not a plain sum over micro-batches).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/train/adamw.h"
#include "core/train/refine_step.h"
#include "core/train/training_precision.h"
#include "support/fixture.h"

namespace refinery {
namespace {

struct StepResult {
  StepLosses losses;
  std::map<std::string, torch::Tensor> grads;
};

StepResult one_step(RefineMethod method, int64_t micro, const torch::Tensor& pixels, const torch::Tensor& tokens,
                    bool bf16 = false, const std::string& device = "cpu") {
  ClipModel student = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  ClipModel teacher = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  student->to(torch::Device(device));
  teacher->to(torch::Device(device));
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  RefineOptions o;
  o.objective.method = method;
  o.micro_batch_size = micro;
  o.seed = 7;
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (auto& p : student->named_parameters()) params.emplace_back(p.key(), p.value());
  AdamW opt(params);
  RefineStep step(student, needs_teacher(method) ? teacher : ClipModel(nullptr), opt, o, torch::Device(device), bf16);
  StepResult r;
  r.losses = step.run(pixels, tokens, 3, 1e-6);
  for (auto& p : student->named_parameters()) {
    if (p.value().grad().defined()) r.grads[p.key()] = p.value().grad().cpu().clone();  // logit_scale only when used
  }
  return r;
}

struct Batch {
  torch::Tensor pixels, tokens;
};

Batch fixture_batch(int64_t b) {
  ClipModel probe = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  const auto& cfg = probe->config();
  torch::manual_seed(11);
  Batch batch{torch::randn({b, 3, cfg.vision.image_size, cfg.vision.image_size}),
              torch::zeros({b, cfg.text.context_length}, torch::kLong)};
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = 3 + i;  // different lengths: each micro-batch stops at its own EOT
    batch.tokens[i][0] = 49406;
    for (int64_t t = 1; t < len - 1; ++t) batch.tokens[i][t] = 300 + 17 * i + t;
    batch.tokens[i][len - 1] = 49407;
  }
  return batch;
}

// The student starts as the teacher's copy, so distilling from the teacher
// (self-kd: HyCD with alpha 0) starts at a loss of zero, unless the two run
// different arithmetic (as bf16 autocast once made them). Every precision the
// machine can run is checked; one it cannot is refused with a clear reason.
TEST(RefineStepTest, SelfDistillationStartsAtZeroInEveryPrecisionTheDeviceRuns) {
  const Batch batch = fixture_batch(4);
  const std::string device = testing::test_device();
  int runnable = 0;
  for (const auto precision : {TrainingPrecision::kFloat32, TrainingPrecision::kBFloat16}) {
    const char* name = training_precision_name(precision);
    try {
      check_training_precision(precision, torch::Device(device));
    } catch (const Error& e) {
      ASSERT_EQ(precision, TrainingPrecision::kBFloat16) << "fp32 must always run: " << e.what();
      EXPECT_NE(std::string(e.what()).find("precision bf16 is not available on " + device), std::string::npos) << e.what();
      std::cout << "[ skipped  ] " << name << ": " << e.what() << "\n";
      continue;
    }
    ++runnable;
    const bool bf16 = precision == TrainingPrecision::kBFloat16;
    for (const int64_t micro : {0, 2}) {
      const StepResult r = one_step(RefineMethod::kSelfKd, micro, batch.pixels, batch.tokens, bf16, device);
      EXPECT_NEAR(r.losses.total, 0.0, 1e-6) << name << " on " << device << ", micro-batch " << micro;
    }
  }
  EXPECT_GE(runnable, 1);
}

// On a GPU (REFINERY_TEST_DEVICE=cuda) a step computes the CPU's losses and
// gradients: the RaFA prior is drawn on the CPU from the seed, so both draw
// the same numbers. cuDNN's convolutions may run in TF32, hence the 1e-2.
TEST(RefineStepTest, TheTestDeviceComputesTheCpusStep) {
  const std::string device = testing::test_device();
  if (device == "cpu") GTEST_SKIP() << "REFINERY_TEST_DEVICE is cpu: no second device to compare";
  const Batch batch = fixture_batch(6);
  for (auto method : {RefineMethod::kClipRefine, RefineMethod::kContrastive}) {
    const StepResult cpu = one_step(method, 0, batch.pixels, batch.tokens, false, "cpu");
    const StepResult dev = one_step(method, 0, batch.pixels, batch.tokens, false, device);
    EXPECT_NEAR(dev.losses.total, cpu.losses.total, 1e-3 * std::abs(cpu.losses.total)) << refine_method_name(method);
    ASSERT_EQ(dev.grads.size(), cpu.grads.size()) << refine_method_name(method);
    double worst = 0;
    for (const auto& [name, g] : cpu.grads) {
      ASSERT_TRUE(dev.grads.count(name)) << name;
      const double scale = g.abs().max().item<double>() + 1e-12;
      worst = std::max(worst, (g - dev.grads.at(name)).abs().max().item<double>() / scale);
    }
    EXPECT_LT(worst, 1e-2) << refine_method_name(method) << " on " << device;
    std::cout << "[ " << device << " ] " << refine_method_name(method) << ": loss " << dev.losses.total << " (cpu "
              << cpu.losses.total << "), worst gradient difference " << worst << " of the largest\n";
  }
}

TEST(RefineStepTest, MicroBatchesGiveTheWholeBatchsGradient) {
  ClipModel probe = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  const auto& cfg = probe->config();
  torch::manual_seed(11);
  const int64_t b = 6;
  torch::Tensor pixels = torch::randn({b, 3, cfg.vision.image_size, cfg.vision.image_size});
  torch::Tensor tokens = torch::zeros({b, cfg.text.context_length}, torch::kLong);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = 3 + i;  // different lengths: each micro-batch stops at its own EOT
    tokens[i][0] = 49406;
    for (int64_t t = 1; t < len - 1; ++t) tokens[i][t] = 300 + 17 * i + t;
    tokens[i][len - 1] = 49407;
  }
  for (auto method : {RefineMethod::kClipRefine, RefineMethod::kContrastive, RefineMethod::kHycdAlign}) {
    const StepResult whole = one_step(method, 0, pixels, tokens);
    const StepResult micro = one_step(method, 2, pixels, tokens);
    EXPECT_NEAR(micro.losses.total, whole.losses.total, 1e-5 * std::abs(whole.losses.total)) << refine_method_name(method);
    double worst = 0;
    ASSERT_EQ(whole.grads.size(), micro.grads.size()) << refine_method_name(method);
    for (const auto& [name, g] : whole.grads) {
      ASSERT_TRUE(micro.grads.count(name)) << name;
      const torch::Tensor& h = micro.grads.at(name);
      const double scale = g.abs().max().item<double>() + 1e-12;
      worst = std::max(worst, (g - h).abs().max().item<double>() / scale);
    }
    EXPECT_LT(worst, 1e-4) << refine_method_name(method);
    // The gradient is not trivially zero.
    EXPECT_GT(whole.grads.at("text_projection").abs().max().item<double>(), 0) << refine_method_name(method);
  }
}

}  // namespace
}  // namespace refinery
