#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "core/safetensors/safetensors.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::TempDir;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_same_weights(ClipModel& a, ClipModel& b, double tol = 0) {
  auto sa = model_state_dict(a), sb = model_state_dict(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [k, v] : sa) {
    ASSERT_TRUE(sb.count(k)) << k;
    if (tol == 0) {
      EXPECT_TRUE(torch::equal(v, sb.at(k))) << k;
    } else {
      EXPECT_TRUE(torch::allclose(v, sb.at(k), tol, tol)) << k;
    }
  }
}

TEST(Checkpoint, DetectsEachFormat) {
  EXPECT_EQ(CheckpointReader::detect_format(testing::fixture("tiny.jit.pt")), CheckpointFormat::kTorchScript);
  EXPECT_EQ(CheckpointReader::detect_format(testing::fixture("tiny.state_dict.pt")), CheckpointFormat::kTorchStateDict);
  EXPECT_EQ(CheckpointReader::detect_format(testing::fixture("tiny.safetensors")), CheckpointFormat::kSafetensors);
  EXPECT_EQ(CheckpointReader::detect_format(testing::fixture("tiny-hf")), CheckpointFormat::kHuggingFace);
}

TEST(Checkpoint, AllFormsHoldTheSameWeightsAndArchitecture) {
  Checkpoint base_info;
  auto base = CheckpointReader::load_model(testing::fixture("tiny.safetensors"), {}, &base_info);
  // The architecture the README of the fixture describes.
  EXPECT_EQ(base_info.config.vision.width, 64);
  EXPECT_EQ(base_info.config.vision.layers, 2);
  EXPECT_EQ(base_info.config.vision.patch_size, 16);
  EXPECT_EQ(base_info.config.vision.image_size, 64);
  EXPECT_EQ(base_info.config.text.width, 64);
  EXPECT_EQ(base_info.config.text.heads, 1);
  EXPECT_EQ(base_info.config.embed_dim, 32);
  EXPECT_EQ(base_info.config.text.vocab_size, 49408);
  EXPECT_TRUE(base_info.config.quick_gelu);
  for (const char* form : {"tiny.jit.pt", "tiny.state_dict.pt", "tiny-hf"}) {
    Checkpoint info;
    auto other = CheckpointReader::load_model(testing::fixture(form), {}, &info);
    EXPECT_TRUE(info.config == base_info.config) << form;
    if (std::string(form) != "tiny.jit.pt") {
      expect_same_weights(base, other);
      continue;
    }
    // The TorchScript archive stores every tensor in fp16 (as OpenAI's
    // released archives do): it holds the fp16 rounding of each weight.
    auto sa = model_state_dict(base), sb = model_state_dict(other);
    for (const auto& [k, v] : sa) {
      EXPECT_TRUE(torch::equal(v.to(torch::kHalf).to(torch::kFloat), sb.at(k))) << k;
    }
  }
}

TEST(Checkpoint, SafetensorsRoundTripIsExactInFp32) {
  TempDir dir;
  auto model = CheckpointReader::load_model(testing::fixture("tiny.jit.pt"));
  CheckpointWriteOptions opts;
  opts.metadata["lineage"] = "test";
  CheckpointWriter::write_safetensors(model, dir / "m.safetensors", opts);
  Checkpoint info;
  auto back = CheckpointReader::load_model(dir / "m.safetensors", {}, &info);
  expect_same_weights(model, back);
  EXPECT_EQ(info.config_source, "checkpoint metadata");
  EXPECT_EQ(info.metadata.at("lineage"), "test");
  // open_clip key names, as other tools expect.
  auto file = SafetensorsFile::open(dir / "m.safetensors");
  EXPECT_TRUE(file.contains("visual.transformer.resblocks.1.attn.in_proj_weight"));
  EXPECT_TRUE(file.contains("text_projection"));
  EXPECT_EQ(file.at("text_projection").dtype, DType::kF32);
}

TEST(Checkpoint, Fp16RoundTripEqualsHalfRoundedWeights) {
  TempDir dir;
  auto model = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  CheckpointWriteOptions opts;
  opts.precision = WeightPrecision::kFloat16;
  CheckpointWriter::write_safetensors(model, dir / "h.safetensors", opts);
  auto file = SafetensorsFile::open(dir / "h.safetensors");
  EXPECT_EQ(file.at("visual.conv1.weight").dtype, DType::kF16);
  EXPECT_EQ(file.at("logit_scale").dtype, DType::kF32);
  auto back = CheckpointReader::load_model(dir / "h.safetensors");
  auto sa = model_state_dict(model), sb = model_state_dict(back);
  for (const auto& [k, v] : sa) {
    const auto expected = k == "logit_scale" ? v : v.to(torch::kHalf).to(torch::kFloat);
    EXPECT_TRUE(torch::equal(expected, sb.at(k))) << k;
  }
}

TEST(Checkpoint, HuggingFaceFolderRoundTripIsExact) {
  TempDir dir;
  auto model = CheckpointReader::load_model(testing::fixture("tiny.state_dict.pt"));
  CheckpointWriter::write_hf_folder(model, dir / "hf");
  Checkpoint info;
  auto back = CheckpointReader::load_model(dir / "hf", {}, &info);
  EXPECT_EQ(info.format, CheckpointFormat::kHuggingFace);
  expect_same_weights(model, back);
  auto cfg = nlohmann::json::parse(testing::read_file(dir / "hf/config.json"));
  EXPECT_EQ(cfg["vision_config"]["hidden_act"], "quick_gelu");
  EXPECT_EQ(cfg["projection_dim"], 32);
  // Refuses to write over a folder that holds something.
  EXPECT_NE(error_of([&] { CheckpointWriter::write_hf_folder(model, dir / "hf"); }).find("not empty"),
            std::string::npos);
}

// A safetensors checkpoint made from the fixture with one change.
std::string edited_checkpoint(const TempDir& dir, const std::function<void(StateDict&)>& edit) {
  Checkpoint ck = CheckpointReader::read(testing::fixture("tiny.safetensors"));
  edit(ck.state);
  SafetensorsWriter w;
  for (auto& [k, v] : ck.state) {
    auto t = v.contiguous();
    w.add(k, DType::kF32, t.sizes().vec(), t.data_ptr(), t.numel() * sizeof(float));
  }
  const std::string path = dir / "edited.safetensors";
  w.write(path);
  return path;
}

TEST(Checkpoint, UnexpectedKeyIsNamed) {
  TempDir dir;
  auto path = edited_checkpoint(dir, [](StateDict& s) { s["visual.extra_head.weight"] = torch::zeros({3}); });
  const auto error = error_of([&] { CheckpointReader::load_model(path); });
  EXPECT_NE(error.find("unexpected key(s) 'visual.extra_head.weight'"), std::string::npos) << error;
}

TEST(Checkpoint, MissingKeyIsNamed) {
  TempDir dir;
  auto path = edited_checkpoint(dir, [](StateDict& s) { s.erase("visual.ln_post.bias"); });
  const auto error = error_of([&] { CheckpointReader::load_model(path); });
  EXPECT_NE(error.find("missing key(s) 'visual.ln_post.bias'"), std::string::npos) << error;
}

TEST(Checkpoint, WrongShapeIsNamedWithBothShapes) {
  TempDir dir;
  auto path = edited_checkpoint(dir, [](StateDict& s) { s["visual.ln_pre.weight"] = torch::ones({65}); });
  const auto error = error_of([&] { CheckpointReader::load_model(path); });
  EXPECT_NE(error.find("'visual.ln_pre.weight' has shape [65]"), std::string::npos) << error;
  EXPECT_NE(error.find("[64]"), std::string::npos) << error;
}

TEST(Checkpoint, OpenClipTrainingCheckpointPrefixesAreStripped) {
  // module.-prefixed keys (DDP) in a safetensors file load like plain ones.
  TempDir dir;
  auto path = edited_checkpoint(dir, [](StateDict& s) {
    StateDict prefixed;
    for (auto& [k, v] : s) prefixed["module." + k] = v;
    s = prefixed;
  });
  auto a = CheckpointReader::load_model(path);
  auto b = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  expect_same_weights(a, b);
}

// An open_clip training checkpoint: torch.save({"epoch", "name",
// "state_dict": {"module.<key>": tensor}}) with fp16 weights. LibTorch's
// pickle_save writes the same zip format as Python's torch.save.
TEST(Checkpoint, OpenClipTrainingCheckpointViaTorchSave) {
  TempDir dir;
  Checkpoint ck = CheckpointReader::read(testing::fixture("tiny.safetensors"));
  c10::Dict<std::string, at::Tensor> state;
  for (auto& [k, v] : ck.state) state.insert("module." + k, v.to(torch::kHalf));
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("epoch", c10::IValue(int64_t{3}));
  top.insert("name", c10::IValue(std::string("tiny-run")));
  top.insert("state_dict", c10::IValue(state));
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(top));
  testing::write_file(dir / "epoch_3.pt", std::string(bytes.begin(), bytes.end()));

  EXPECT_EQ(CheckpointReader::detect_format(dir / "epoch_3.pt"), CheckpointFormat::kTorchStateDict);
  auto model = CheckpointReader::load_model(dir / "epoch_3.pt");
  auto loaded = model_state_dict(model);
  for (const auto& [k, v] : ck.state) {
    EXPECT_TRUE(torch::equal(loaded.at(k), v.to(torch::kHalf).to(torch::kFloat))) << k;
  }
}

TEST(Checkpoint, DeclaredConfigMustMatchTheWeights) {
  TempDir dir;
  auto cfg = builtin_architecture("ViT-B-32").to_open_clip_json();
  testing::write_file(dir / "b32.json", cfg.dump());
  CheckpointReadOptions opts;
  opts.model_config_path = dir / "b32.json";
  const auto error = error_of([&] { CheckpointReader::read(testing::fixture("tiny.safetensors"), opts); });
  EXPECT_NE(error.find("does not match the weights"), std::string::npos) << error;
}

TEST(Checkpoint, GeluConfigOverrideChangesTheActivation) {
  TempDir dir;
  auto cfg = builtin_architecture("tiny").to_open_clip_json();
  cfg["quick_gelu"] = false;
  testing::write_file(dir / "tiny-gelu.json", cfg.dump());
  CheckpointReadOptions opts;
  opts.model_config_path = dir / "tiny-gelu.json";
  auto gelu = CheckpointReader::load_model(testing::fixture("tiny.safetensors"), opts);
  auto quick = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  EXPECT_FALSE(gelu->config().quick_gelu);
  torch::InferenceMode guard;
  auto pixels = torch::randn({1, 3, 64, 64});
  EXPECT_FALSE(torch::allclose(gelu->encode_image(pixels), quick->encode_image(pixels)));
}

TEST(Checkpoint, NotACheckpointIsRejectedByName) {
  TempDir dir;
  testing::write_file(dir / "notes.pt", "hello, I am a text file");
  const auto error = error_of([&] { CheckpointReader::read(dir / "notes.pt"); });
  EXPECT_NE(error.find(dir / "notes.pt"), std::string::npos) << error;
  EXPECT_NE(error.find("not a recognised checkpoint"), std::string::npos) << error;
  EXPECT_NE(error_of([&] { CheckpointReader::read(dir / "absent.safetensors"); }).find("no such"), std::string::npos);
}

TEST(ModelInit, RandomInitIsDeterministicPerSeedAndLoadable) {
  TempDir dir;
  ClipModel a(builtin_architecture("tiny")), b(builtin_architecture("tiny")), c(builtin_architecture("tiny"));
  a->reset_parameters_random(7);
  b->reset_parameters_random(7);
  c->reset_parameters_random(8);
  expect_same_weights(a, b);
  EXPECT_FALSE(torch::equal(a->visual->proj, c->visual->proj));
  CheckpointWriter::write_safetensors(a, dir / "init.safetensors");
  Checkpoint info;
  auto back = CheckpointReader::load_model(dir / "init.safetensors", {}, &info);
  EXPECT_TRUE(info.config == a->config());
  expect_same_weights(a, back);
}

}  // namespace
}  // namespace refinery
