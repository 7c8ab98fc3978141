// The trainer on the fixture model and a generated COCO caption set: a
// stopped-and-resumed run retraces an uninterrupted one exactly, every
// method trains, and undecodable images fail a run only past the threshold.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/data/caption_dataset.h"
#include "core/refine/refine_trainer.h"
#include "support/caption_fixture.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::TempDir;

struct RunLog {
  std::map<int64_t, double> loss;
  std::vector<int64_t> evals, checkpoints;
};

RefineOptions small_options() {
  RefineOptions o;
  o.batch_size = 2;
  o.val_fraction = 0.25;  // 8 images: 2 validation, 6 training -> 3 steps per epoch
  o.epochs = 2;
  o.lr = 1e-4;            // large enough for the tiny model to move
  o.checkpoint_every = 2;
  o.data_workers = 2;
  o.eval_batch_size = 3;
  return o;
}

std::unique_ptr<RefineTrainer> make_trainer(const std::string& spec, const RefineOptions& o, const std::string& dir) {
  auto data = std::make_shared<CaptionDataset>(load_caption_dataset(spec));
  return std::make_unique<RefineTrainer>(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), data, o,
                                         torch::kCPU, dir);
}

TrainerCallbacks logging_callbacks(RunLog& log, int stop_after = -1) {
  TrainerCallbacks cb;
  cb.on_step = [&log](const StepReport& r) {
    EXPECT_TRUE(std::isfinite(r.loss));
    EXPECT_EQ(r.batch_rows, 2);
    log.loss[r.step] = r.loss;
  };
  cb.on_eval = [&log](int64_t step, const std::map<std::string, double>& m) {
    log.evals.push_back(step);
    for (const char* k : {"modality_gap", "modality_gap_l2", "alignment", "uniformity", "t2i_r1", "t2i_r5", "t2i_r10",
                          "i2t_r1", "i2t_r5", "i2t_r10", "val_loss"}) {
      EXPECT_TRUE(m.count(k)) << "missing metric " << k;
    }
  };
  cb.on_checkpoint = [&log](const TrainingCheckpointInfo& w, const std::vector<TrainingCheckpointInfo>&) {
    log.checkpoints.push_back(w.step);
  };
  cb.should_stop = [&log, stop_after] {
    return stop_after >= 0 && static_cast<int>(log.loss.size()) >= stop_after;
  };
  return cb;
}

TEST(RefineTrainerTest, AStoppedAndResumedRunRetracesAnUninterruptedOne) {
  TempDir dir;
  const std::string spec = testing::make_coco_caption_set(dir / "data", {8, 2, 0});
  const RefineOptions o = small_options();

  RunLog full;
  auto a = make_trainer(spec, o, dir / "full");
  EXPECT_EQ(a->total_steps(), 6);
  EXPECT_EQ(a->train_images(), 6u);
  EXPECT_EQ(a->val_images(), 2u);
  ASSERT_EQ(a->run(logging_callbacks(full)), TrainOutcome::kFinished);
  ASSERT_EQ(full.loss.size(), 6u);
  EXPECT_EQ(full.evals, (std::vector<int64_t>{0, 6}));
  EXPECT_EQ(full.checkpoints, (std::vector<int64_t>{2, 4}));

  RunLog first;
  auto b = make_trainer(spec, o, dir / "resumed");
  ASSERT_EQ(b->run(logging_callbacks(first, /*stop_after=*/3)), TrainOutcome::kStopped);
  ASSERT_EQ(first.loss.size(), 3u);
  EXPECT_EQ(first.checkpoints.back(), 3);  // where it stopped
  b.reset();

  RunLog second;
  auto c = make_trainer(spec, o, dir / "resumed");
  ASSERT_EQ(c->run(logging_callbacks(second)), TrainOutcome::kFinished);
  ASSERT_EQ(second.loss.size(), 3u);
  EXPECT_EQ(second.loss.begin()->first, 4);
  for (int64_t step = 1; step <= 6; ++step) {
    const double resumed = step <= 3 ? first.loss.at(step) : second.loss.at(step);
    EXPECT_NEAR(resumed, full.loss.at(step), 1e-9 * std::abs(full.loss.at(step))) << "step " << step;
  }
  auto pa = a->student()->named_parameters(), pc = c->student()->named_parameters();
  for (const auto& p : pa) {
    EXPECT_TRUE(torch::allclose(p.value(), pc[p.key()], 1e-6, 1e-8)) << p.key();
  }
  // Training moved the weights.
  ClipModel base = CheckpointReader::load_model(testing::fixture("tiny.safetensors"));
  EXPECT_FALSE(torch::allclose(base->text_projection, a->student()->text_projection));
}

TEST(RefineTrainerTest, EveryMethodTrainsWithFiniteLosses) {
  TempDir dir;
  const std::string spec = testing::make_coco_caption_set(dir / "data", {6, 1, 0});
  for (const char* method : {"clip-refine", "contrastive", "self-kd", "hycd", "rafa", "hycd-align"}) {
    RefineOptions o;
    o.objective.method = parse_refine_method(method);
    o.batch_size = 3;
    o.val_fraction = 0;
    o.max_steps = 2;
    o.lr = 1e-4;
    std::vector<StepReport> steps;
    TrainerCallbacks cb;
    cb.on_step = [&](const StepReport& r) { steps.push_back(r); };
    auto t = make_trainer(spec, o, dir / method);
    ASSERT_EQ(t->run(cb), TrainOutcome::kFinished) << method;
    ASSERT_EQ(steps.size(), 2u) << method;
    const std::string m = method;
    const bool rafa = m == "clip-refine" || m == "rafa", hycd = m != "contrastive" && m != "rafa";
    EXPECT_TRUE(std::isfinite(steps[0].loss)) << method;
    EXPECT_EQ(std::isfinite(steps[0].loss_rafa), rafa) << method;
    EXPECT_EQ(std::isfinite(steps[0].loss_hycd), hycd) << method;
    EXPECT_EQ(std::isfinite(steps[0].loss_contrastive), m == "contrastive") << method;
    EXPECT_EQ(std::isfinite(steps[0].loss_align), m == "hycd-align") << method;
  }
}

// on_epoch_end comes after the last step of each epoch but the run's last,
// with the weights of that step, and a stop asked for inside it checkpoints
// right there.
TEST(RefineTrainerTest, EpochEndsAreReportedAfterTheirLastStep) {
  TempDir dir;
  const std::string spec = testing::make_coco_caption_set(dir / "data", {6, 1, 0});
  RefineOptions o;
  o.batch_size = 2;
  o.val_fraction = 0;
  o.epochs = 3;  // 3 steps each
  o.lr = 1e-4;
  o.checkpoint_every = 1000;
  std::vector<std::pair<int32_t, int64_t>> ends;
  int64_t last_step = 0;
  bool stop = false;
  TrainerCallbacks cb;
  cb.on_step = [&](const StepReport& r) { last_step = r.step; };
  cb.on_epoch_end = [&](int32_t epoch, int64_t step) {
    EXPECT_EQ(step, last_step);  // right after that step
    ends.emplace_back(epoch, step);
    stop = epoch == 1;
  };
  cb.should_stop = [&] { return stop; };
  auto t = make_trainer(spec, o, dir / "run");
  ASSERT_EQ(t->run(cb), TrainOutcome::kStopped);
  ASSERT_TRUE(TrainingCheckpoint::latest(dir / "run").has_value());
  EXPECT_EQ(TrainingCheckpoint::latest(dir / "run")->step, 3);  // where the stop came
  stop = false;
  auto resumed = make_trainer(spec, o, dir / "run");
  ASSERT_EQ(resumed->run(cb), TrainOutcome::kFinished);
  EXPECT_EQ(ends, (std::vector<std::pair<int32_t, int64_t>>{{1, 3}, {2, 6}}));  // none after the last epoch
}

TEST(RefineTrainerTest, UndecodableImagesAreSkippedUntilTheThreshold) {
  TempDir dir;
  {
    // 2 broken among 10: skipped, counted, the run succeeds.
    const std::string spec = testing::make_coco_caption_set(dir / "few", {8, 1, 2});
    RefineOptions o;
    o.batch_size = 5;
    o.val_fraction = 0;
    o.epochs = 1;
    int64_t skipped = 0;
    TrainerCallbacks cb;
    cb.on_step = [&](const StepReport& r) { skipped = r.images_skipped; };
    auto t = make_trainer(spec, o, dir / "few-run");
    EXPECT_EQ(t->run(cb), TrainOutcome::kFinished);
    EXPECT_EQ(skipped, 2);
  }
  {
    // 30 broken among 34: the first batch of 20 is past 10 skipped.
    const std::string spec = testing::make_coco_caption_set(dir / "many", {4, 1, 30});
    RefineOptions o;
    o.batch_size = 20;
    o.val_fraction = 0;
    auto t = make_trainer(spec, o, dir / "many-run");
    try {
      t->run({});
      FAIL() << "expected the run to fail";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("failed to decode"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace refinery
