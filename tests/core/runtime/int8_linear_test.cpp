#include "core/runtime/int8_linear.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/base/error.h"

namespace refinery {
namespace {

#define SKIP_WITHOUT_ENGINE()                                                          \
  if (int8_quantized_engine().empty()) GTEST_SKIP() << "no x86/FBGEMM/oneDNN quantized engine"

TEST(Int8Linear, StaysWithinTheQuantizationErrorBoundOfTheFloatLayer) {
  SKIP_WITHOUT_ENGINE();
  torch::manual_seed(3);
  const auto weight = torch::randn({64, 48}) * 0.1;
  const auto bias = torch::randn({64});
  const auto x = torch::randn({5, 7, 48}) * 2 + 0.3;
  const Int8Linear layer(weight, bias);
  torch::InferenceMode guard;
  const auto got = layer.forward(x);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{5, 7, 64}));
  const auto want = torch::nn::functional::linear(x, weight, bias);
  // The bound of round-to-nearest quantization: each weight is off by at
  // most half its row's step (max|w|/127), each input by half the input
  // step (its range, widened to hold 0, over 255); a product's error is
  // bounded by the sum of both terms over the row.
  const auto rows = x.reshape({-1, 48});
  const double x_step = (rows.max().clamp_min(0) - rows.min().clamp_max(0)).item<double>() / 255.0;
  const auto w_step = weight.abs().amax(1) / 127.0;                                          // [64]
  const auto bound = 0.5 * x_step * weight.abs().sum(1).unsqueeze(0) +                     // [1, 64]
                     0.5 * rows.abs().sum(1, true) * w_step.unsqueeze(0) +                 // [35, 64]
                     0.25 * x_step * w_step.unsqueeze(0) * 48;                              // both at once
  const auto err = (got.reshape({-1, 64}) - want.reshape({-1, 64})).abs();
  EXPECT_TRUE((err <= bound * 1.001 + 1e-5).all().item<bool>()) << "worst excess " << (err - bound).max().item<double>();
  // And it is int8 arithmetic, not the float layer under another name.
  EXPECT_GT(err.max().item<double>(), 1e-4);
  EXPECT_GT(torch::cosine_similarity(got.reshape({-1, 64}), want.reshape({-1, 64}), 1).min().item<double>(), 0.999);
  EXPECT_EQ(layer.in_features(), 48);
  EXPECT_EQ(layer.out_features(), 64);
  EXPECT_GE(layer.bytes(), 64 * 48);
}

TEST(Int8Linear, AnAllZeroWeightRowGivesItsBiasAndNoBiasMeansZero) {
  SKIP_WITHOUT_ENGINE();
  auto weight = torch::randn({4, 16});
  weight[2].zero_();
  const auto bias = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f});
  torch::InferenceMode guard;
  const auto x = torch::randn({3, 16});
  const auto y = Int8Linear(weight, bias).forward(x);
  EXPECT_TRUE(torch::allclose(y.select(1, 2), torch::full({3}, 3.0f))) << y;
  const auto unbiased = Int8Linear(weight, torch::Tensor()).forward(x);
  EXPECT_TRUE(torch::allclose(unbiased.select(1, 2), torch::zeros({3}))) << unbiased;
  EXPECT_TRUE(torch::allclose(y - unbiased, bias.expand({3, 4}), 1e-5, 1e-5));
}

TEST(Int8Linear, AnInputOfTheWrongWidthIsRefusedNamingBoth) {
  SKIP_WITHOUT_ENGINE();
  const Int8Linear layer(torch::randn({8, 16}), torch::zeros({8}));
  torch::InferenceMode guard;
  try {
    layer.forward(torch::randn({2, 12}));
    FAIL() << "a 12-wide input was accepted by a 16-wide layer";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("12 features"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("takes 16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Int8Linear(torch::randn({8}), torch::Tensor()), Error);  // not a matrix
}

}  // namespace
}  // namespace refinery
