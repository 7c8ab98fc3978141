// Training checkpoints: what is saved comes back exactly, partial folders
// never count, and pruning keeps the newest.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/checkpoint/checkpoint_reader.h"
#include "core/train/training_checkpoint.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::TempDir;

struct Trained {
  ClipModel model{nullptr};
  std::unique_ptr<AdamW> opt;
};

Trained trained_tiny(int steps) {
  Trained t;
  t.model = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (auto& p : t.model->named_parameters()) params.emplace_back(p.key(), p.value());
  t.opt = std::make_unique<AdamW>(params);
  torch::manual_seed(1);
  for (int i = 0; i < steps; ++i) {
    for (auto& p : t.opt->params()) p.value.mutable_grad() = torch::randn_like(p.value);
    t.opt->step(1e-3);
  }
  return t;
}

TEST(TrainingCheckpointTest, SaveThenLoadRestoresWeightsAndOptimizerExactly) {
  TempDir dir;
  Trained a = trained_tiny(3);
  auto info = TrainingCheckpoint::save(dir.path(), 3, 2, a.model, *a.opt, {{"note", "x"}});
  EXPECT_EQ(info.step, 3);

  Trained b = trained_tiny(0);
  auto latest = TrainingCheckpoint::latest(dir.path());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->step, 3);
  EXPECT_EQ(latest->images_skipped, 2);
  EXPECT_EQ(latest->extra.value("note", ""), "x");
  TrainingCheckpoint::load(*latest, b.model, *b.opt);
  EXPECT_EQ(b.opt->steps(), 3);
  for (size_t i = 0; i < a.opt->params().size(); ++i) {
    const auto& pa = a.opt->params()[i];
    const auto& pb = b.opt->params()[i];
    ASSERT_EQ(pa.name, pb.name);
    EXPECT_TRUE(torch::equal(pa.value, pb.value)) << pa.name;
    EXPECT_TRUE(torch::equal(pa.exp_avg, pb.exp_avg)) << pa.name;
    EXPECT_TRUE(torch::equal(pa.exp_avg_sq, pb.exp_avg_sq)) << pa.name;
    EXPECT_EQ(pa.steps, pb.steps) << pa.name;
  }
  // The model file is an ordinary checkpoint.
  ClipModel loaded = CheckpointReader::load_model(info.path + "/model.safetensors");
  EXPECT_TRUE(torch::equal(loaded->text_projection, a.model->text_projection));
}

TEST(TrainingCheckpointTest, PartialFoldersAreIgnoredAndPruneKeepsTheNewest) {
  TempDir dir;
  Trained a = trained_tiny(1);
  for (int step : {10, 20, 30}) TrainingCheckpoint::save(dir.path(), step, 0, a.model, *a.opt);
  // A crash mid-write leaves a folder without state.json: never picked.
  std::filesystem::create_directories(dir / "step-00000040");
  testing::write_file(dir / "step-00000040/model.safetensors", "partial");
  EXPECT_EQ(TrainingCheckpoint::latest(dir.path())->step, 30);

  auto removed = TrainingCheckpoint::prune(dir.path(), 2);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].step, 10);
  auto left = TrainingCheckpoint::list(dir.path());
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].step, 20);
  EXPECT_EQ(left[1].step, 30);
  EXPECT_FALSE(std::filesystem::exists(dir / "step-00000010"));
}

TEST(TrainingCheckpointTest, EmptyOrMissingFolderHasNoCheckpoint) {
  TempDir dir;
  EXPECT_FALSE(TrainingCheckpoint::latest(dir.path()).has_value());
  EXPECT_FALSE(TrainingCheckpoint::latest(dir / "nope").has_value());
}

}  // namespace
}  // namespace refinery
