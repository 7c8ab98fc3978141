#include "core/model/layers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/model/clip_model.h"

namespace refinery {
namespace {

TEST(LayersTest, LinearDrawsAndComputesAsLibTorchs) {
  torch::manual_seed(11);
  torch::nn::Linear theirs(7, 5);
  torch::manual_seed(11);
  Linear ours(7, 5);
  EXPECT_TRUE(torch::equal(ours->weight, theirs->weight));
  EXPECT_TRUE(torch::equal(ours->bias, theirs->bias));
  const auto x = torch::randn({3, 4, 7});
  EXPECT_TRUE(torch::equal(ours->forward(x), theirs->forward(x)));
  // Same names, so checkpoints load by name as before.
  EXPECT_EQ(ours->named_parameters().keys(), theirs->named_parameters().keys());
}

TEST(LayersTest, EmbeddingDrawsAndComputesAsLibTorchs) {
  torch::manual_seed(12);
  torch::nn::Embedding theirs(50, 6);
  torch::manual_seed(12);
  Embedding ours(50, 6);
  EXPECT_TRUE(torch::equal(ours->weight, theirs->weight));
  const auto ids = torch::tensor({{3, 49, 0}, {7, 7, 1}}, torch::kLong);
  EXPECT_TRUE(torch::equal(ours->forward(ids), theirs->forward(ids)));
  EXPECT_EQ(ours->named_parameters().keys(), theirs->named_parameters().keys());
}

TEST(LayersTest, SkippedInitDrawsNothingButTheConvolution) {
  // A ViT-B/32-shaped tower, small: what the random generator gives after
  // building the model under SkipParameterInit equals what it gives after
  // building only the patch convolution (LibTorch's Conv2d, whose
  // initialisation is not skipped: 3 x W x P x P draws, a small share).
  ClipConfig c;
  c.embed_dim = 16;
  c.vision.image_size = 32;
  c.vision.patch_size = 8;
  c.vision.width = 32;
  c.vision.layers = 2;
  c.vision.heads = 2;
  c.text.width = 32;
  c.text.heads = 2;
  c.text.layers = 2;
  c.text.vocab_size = 100;
  c.text.context_length = 16;
  torch::manual_seed(21);
  {
    SkipParameterInit skip;
    ClipModel model(c);
    EXPECT_EQ(model->token_embedding->weight.sizes(), (std::vector<int64_t>{100, 32}));
  }
  const auto after_skipped = torch::rand({4});
  torch::manual_seed(21);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, c.vision.width, c.vision.patch_size).stride(8).bias(false));
  const auto after_conv_only = torch::rand({4});
  EXPECT_TRUE(torch::equal(after_skipped, after_conv_only));
  // Without the guard the same build draws far more.
  torch::manual_seed(21);
  ClipModel random(c);
  EXPECT_FALSE(torch::equal(torch::rand({4}), after_conv_only));
  EXPECT_FALSE(SkipParameterInit::active());
}

}  // namespace
}  // namespace refinery
