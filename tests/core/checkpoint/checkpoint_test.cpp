#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_header.h"
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

TEST(Checkpoint, LoadedWeightsAreTheFilesPagesAndWritesStayPrivate) {
  // load_model serves an fp32 safetensors file from its mapping: the model
  // equals a copying read, training it in place works, and the file never
  // changes (copy-on-write), so a second load sees the original weights.
  TempDir dir;
  const std::string path = dir / "tiny.safetensors";
  testing::write_file(path, testing::read_file(testing::fixture("tiny.safetensors")));
  const std::string before = testing::read_file(path);
  const Checkpoint copied = CheckpointReader::read(path);
  {
    ClipModel model = CheckpointReader::load_model(path);
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(torch::equal(p.value(), copied.state.at(p.key()))) << p.key();
    }
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(1.0f);
    EXPECT_TRUE(torch::equal(model->token_embedding->weight, copied.state.at("token_embedding.weight") + 1.0f));
    ClipModel again = CheckpointReader::load_model(path);  // while the first still maps the file
    EXPECT_TRUE(torch::equal(again->token_embedding->weight, copied.state.at("token_embedding.weight")));
  }
  EXPECT_EQ(testing::read_file(path), before);
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

// The header-only read (what models import runs before any weight) tells
// the same architecture and shapes as reading the weights themselves.
TEST(CheckpointHeader, AgreesWithTheFullReadForSafetensorsAndHuggingFace) {
  TempDir dir;
  auto model = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  CheckpointWriter::write_hf_folder(model, dir / "hf");
  for (const std::string& path : {testing::fixture("tiny.safetensors"), testing::fixture("tiny-hf"),
                                 std::string(dir / "hf")}) {
    const auto header = read_checkpoint_header(path);
    ASSERT_TRUE(header.has_value()) << path;
    const Checkpoint full = CheckpointReader::read(path);
    EXPECT_EQ(header->format, full.format) << path;
    EXPECT_EQ(header->config, full.config) << path;
    EXPECT_EQ(header->config_source, full.config_source) << path;
    EXPECT_EQ(header->shapes, shapes_of(full.state)) << path;
    EXPECT_EQ(header->shapes.size(), full.state.size()) << path;
  }
  // Torch files have no header to read: the caller reads them whole.
  EXPECT_FALSE(read_checkpoint_header(testing::fixture("tiny.state_dict.pt")).has_value());
}

// A Hugging Face folder whose weights are the fixture's, in HF names, with
// one change; `index` writes them as one shard listed by an index file.
std::string edited_hf_folder(const TempDir& dir, const std::function<void(StateDict&)>& edit,
                             const std::string& shard = "") {
  auto model = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  const std::string folder = dir / "hf-edited";
  CheckpointWriter::write_hf_folder(model, folder);
  auto file = SafetensorsFile::open(folder + "/model.safetensors");
  StateDict hf;
  for (const auto& name : file.names()) {
    const auto values = file.at(name).to_floats();
    hf[name] = torch::tensor(values).reshape(file.at(name).shape);
  }
  edit(hf);
  SafetensorsWriter w;
  for (auto& [k, v] : hf) {
    auto t = v.to(torch::kFloat).contiguous();
    w.add(k, DType::kF32, t.sizes().vec(), t.data_ptr(), t.numel() * sizeof(float));
  }
  std::remove((folder + "/model.safetensors").c_str());
  if (shard.empty()) {
    w.write(folder + "/model.safetensors");
  } else {
    w.write(folder + "/weights.safetensors");
    nlohmann::json index;
    for (const auto& [k, v] : hf) index["weight_map"][k] = shard;
    testing::write_file(folder + "/model.safetensors.index.json", index.dump());
  }
  return folder;
}

TEST(CheckpointHeader, MalformedHuggingFaceWeightsAreNamedNotCrashed) {
  // Each was a raw LibTorch error (or worse) before the names were checked on shapes.
  const std::string qkv = "vision_model.encoder.layers.0.self_attn.k_proj.weight";
  const std::string proj = "text_projection.weight";
  const std::vector<std::pair<std::function<void(StateDict&)>, std::string>> cases = {
      {[&](StateDict& s) { s[qkv] = torch::zeros({63, 64}); }, "must share one shape"},
      {[&](StateDict& s) { s.erase(qkv); }, "missing k_proj"},
      {[&](StateDict& s) { s[proj] = torch::zeros({2, 32, 64}); }, "a projection must be 2-D"},
      {[&](StateDict& s) { s["vision_model.encoder.layers.x.layer_norm1.weight"] = torch::zeros({64}); },
       "unexpected key 'vision_model.encoder.layers.x.layer_norm1.weight'"},
      {[&](StateDict& s) { s["text_model.encoder.layers.0"] = torch::zeros({1}); },
       "unexpected key 'text_model.encoder.layers.0'"},
  };
  for (const auto& [edit, phrase] : cases) {
    TempDir dir;
    const std::string folder = edited_hf_folder(dir, edit);
    for (const auto& error : {error_of([&] { read_checkpoint_header(folder); }),
                              error_of([&] { CheckpointReader::read(folder); })}) {
      EXPECT_NE(error.find(folder), std::string::npos) << error;
      EXPECT_NE(error.find(phrase), std::string::npos) << error;
    }
  }
}

TEST(CheckpointHeader, ShardsMustBeFilesInsideTheFolder) {
  TempDir dir;
  const std::string ok = edited_hf_folder(dir, [](StateDict&) {}, "weights.safetensors");
  EXPECT_EQ(read_checkpoint_header(ok)->shapes, CheckpointReader::read_header(testing::fixture("tiny-hf")).shapes);
  for (const std::string shard : {"../hf-edited/weights.safetensors", "/etc/passwd", "..", "sub/weights.safetensors"}) {
    TempDir other;
    const std::string folder = edited_hf_folder(other, [](StateDict&) {}, shard);
    for (const auto& error : {error_of([&] { read_checkpoint_header(folder); }),
                              error_of([&] { CheckpointReader::read(folder); })}) {
      EXPECT_NE(error.find("must name a file in the folder"), std::string::npos) << shard << ": " << error;
    }
  }
}

TEST(CheckpointHeader, ImplausibleShapesAreRefusedBeforeAnyArithmetic) {
  TempDir dir;
  // A block number that is not one, and dimensions far past any CLIP.
  auto bad_block = edited_checkpoint(dir, [](StateDict& s) { s["transformer.resblocks.x.ln_1.weight"] = torch::zeros({1}); });
  auto error = error_of([&] { read_checkpoint_header(bad_block); });
  EXPECT_NE(error.find("'transformer.resblocks.x.ln_1.weight' has no block number"), std::string::npos) << error;
  // Shapes only: a [2^30, 0] tensor holds no data, yet its first dimension is huge.
  SafetensorsWriter w;
  Checkpoint ck = CheckpointReader::read(testing::fixture("tiny.safetensors"));
  for (auto& [k, v] : ck.state) {
    auto t = v.contiguous();
    if (k == "visual.positional_embedding") {
      w.add(k, DType::kF32, {int64_t{1} << 30, 0}, nullptr, 0);
      continue;
    }
    w.add(k, DType::kF32, t.sizes().vec(), t.data_ptr(), t.numel() * sizeof(float));
  }
  w.write(dir / "huge.safetensors");
  error = error_of([&] { read_checkpoint_header(dir / "huge.safetensors"); });
  EXPECT_NE(error.find("'visual.positional_embedding' has shape [1073741824, 0]"), std::string::npos) << error;
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
