// int8 dynamic quantization of the model's linear layers (quantize_int8):
// close to the reference features, and the training path untouched.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/checkpoint/checkpoint_reader.h"
#include "core/runtime/int8_linear.h"
#include "core/safetensors/safetensors.h"
#include "support/fixture.h"

namespace refinery {
namespace {

torch::Tensor reference(const std::string& name) {
  static const SafetensorsFile file = SafetensorsFile::open(testing::fixture("reference.safetensors"));
  const TensorView& v = file.at(name);
  if (name == "tokens") {
    auto values = v.to_int32s();
    return torch::from_blob(values.data(), v.shape, torch::kInt).clone();
  }
  auto values = v.to_floats();
  return torch::from_blob(values.data(), v.shape, torch::kFloat).clone();
}

TEST(ModelInt8, FeaturesStayCloseToTheReferenceButAreComputedInInt8) {
  if (int8_quantized_engine().empty()) GTEST_SKIP() << "no x86/FBGEMM/oneDNN quantized engine";
  auto model = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  model->eval();
  const auto tokens = reference("tokens");
  const auto pixels = reference("image_pixels");
  torch::Tensor text32, image32;
  {
    torch::InferenceMode guard;
    text32 = model->encode_text(tokens);
    image32 = model->encode_image(pixels);
  }
  EXPECT_FALSE(model->quantized_int8());
  // Every block of both towers: q/k/v (3W x W), output (W x W) and the MLP
  // (4W x W, W x 4W), one byte per weight at least.
  const int64_t packed = model->quantize_int8();
  const auto& c = model->config();
  ASSERT_EQ(c.vision.mlp_ratio, 4.0);
  EXPECT_GE(packed, 12 * (c.vision.width * c.vision.width * c.vision.layers + c.text.width * c.text.width * c.text.layers));
  EXPECT_TRUE(model->quantized_int8());
  EXPECT_EQ(model->quantize_int8(), 0);  // once
  torch::InferenceMode guard;
  const auto text8 = model->encode_text(tokens);
  const auto image8 = model->encode_image(pixels);
  const auto text_cos = torch::cosine_similarity(text8, reference("text_features"), 1);
  const auto image_cos = torch::cosine_similarity(image8, reference("image_features"), 1);
  // Measured on the fixture: worst text 0.9986, worst image 0.99996.
  for (int64_t i = 0; i < text_cos.size(0); ++i) EXPECT_GE(text_cos[i].item<double>(), 0.995) << "text " << i;
  for (int64_t i = 0; i < image_cos.size(0); ++i) EXPECT_GE(image_cos[i].item<double>(), 0.999) << "image " << i;
  EXPECT_GT((text8 - text32).abs().max().item<double>(), 1e-5) << "the text tower did not run in int8";
  EXPECT_GT((image8 - image32).abs().max().item<double>(), 1e-5) << "the image tower did not run in int8";
}

TEST(ModelInt8, ForwardPassesWithGradientsStillUseTheFp32Weights) {
  if (int8_quantized_engine().empty()) GTEST_SKIP() << "no x86/FBGEMM/oneDNN quantized engine";
  auto model = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  const auto tokens = reference("tokens");
  torch::Tensor before;
  {
    torch::AutoGradMode enable(true);
    before = model->encode_text(tokens).detach();
  }
  model->quantize_int8();
  torch::AutoGradMode enable(true);
  const auto after = model->encode_text(tokens);
  EXPECT_TRUE(torch::equal(after.detach(), before));
  after.sum().backward();
  EXPECT_TRUE(model->transformer->resblocks[0]->as<ResidualAttentionBlock>()->mlp->c_fc->weight.grad().defined());
}

}  // namespace
}  // namespace refinery
