#include "core/model/clip_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "support/fixture.h"

namespace refinery {
namespace {

TEST(ClipConfig, HuggingFaceConfigOfTheFixtureMatchesTheBuiltInTiny) {
  auto hf = ClipConfig::from_json_file(testing::fixture("tiny-hf/config.json"));
  EXPECT_TRUE(hf == builtin_architecture("tiny"));
}

TEST(ClipConfig, OpenClipAndHfJsonRoundTrip) {
  for (const auto& name : builtin_architectures()) {
    const ClipConfig c = builtin_architecture(name);
    EXPECT_TRUE(ClipConfig::from_open_clip_json(c.to_open_clip_json(), name) == c) << name;
    EXPECT_TRUE(ClipConfig::from_hf_json(c.to_hf_json(), name) == c) << name;
  }
}

TEST(ClipConfig, ShipsTheCommonArchitectures) {
  const auto names = builtin_architectures();
  for (const char* n : {"ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  const auto b32 = builtin_architecture("ViT-B-32");
  EXPECT_EQ(b32.vision.width, 768);
  EXPECT_EQ(b32.vision.heads, 12);
  EXPECT_EQ(b32.vision_grid(), 7);
  EXPECT_EQ(b32.text.heads, 8);
  EXPECT_EQ(b32.embed_dim, 512);
}

TEST(ClipConfig, UnknownArchitectureListsTheKnownOnes) {
  try {
    builtin_architecture("ViT-Z-99");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("ViT-B-32"), std::string::npos);
  }
}

TEST(ClipConfig, InfersTheArchitectureFromWeightShapes) {
  ShapeMap shapes = {
      {"visual.conv1.weight", {768, 3, 32, 32}},
      {"visual.positional_embedding", {50, 768}},
      {"visual.proj", {768, 512}},
      {"text_projection", {512, 512}},
      {"positional_embedding", {77, 512}},
      {"token_embedding.weight", {49408, 512}},
      {"ln_final.weight", {512}},
  };
  for (int i = 0; i < 12; ++i) {
    shapes["visual.transformer.resblocks." + std::to_string(i) + ".mlp.c_fc.weight"] = {3072, 768};
    shapes["transformer.resblocks." + std::to_string(i) + ".mlp.c_fc.weight"] = {2048, 512};
  }
  EXPECT_TRUE(infer_clip_config(shapes, "test") == builtin_architecture("ViT-B-32"));
  shapes.erase("ln_final.weight");
  try {
    infer_clip_config(shapes, "ckpt.pt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'ln_final.weight'"), std::string::npos) << e.what();
  }
}

TEST(ClipConfig, ResNetTowersAreRejectedClearly) {
  ShapeMap shapes = {{"visual.attnpool.c_proj.weight", {1024, 2048}}};
  try {
    infer_clip_config(shapes, "rn50.pt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnimplemented);
    EXPECT_NE(std::string(e.what()).find("ResNet"), std::string::npos);
  }
}

TEST(ClipConfig, ValidateNamesTheBadField) {
  ClipConfig c;
  c.vision.image_size = 225;
  try {
    c.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("image_size 225"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace refinery

namespace refinery {
namespace {

// The figures the CLIP paper family quotes for ViT-B/32: ~8.8 GFLOP per
// 224px image and ~6.0 per full 77-token text (multiply-add counted as 2).
TEST(ClipConfig, FlopEstimatesMatchPublishedFigures) {
  const auto b32 = builtin_architecture("ViT-B-32");
  EXPECT_NEAR(b32.image_flops() / 1e9, 8.8, 0.1);
  EXPECT_NEAR(b32.text_flops(77) / 1e9, 6.0, 0.1);
  EXPECT_LT(b32.text_flops(16), b32.text_flops(77) / 4);
}

}  // namespace
}  // namespace refinery
