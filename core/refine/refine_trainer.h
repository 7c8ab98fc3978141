// Runs CLIP-Refine (or one of its baselines) on a caption data set: a
// student trained with AdamW from the base weights, a frozen teacher copy of
// those weights, the data pipeline on worker threads, evaluation on the
// validation split, and checkpoints from which a run resumes exactly (same
// weights, optimizer moments, data order and RaFA samples as a run that was
// never interrupted).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <c10/core/Device.h>
#include "core/data/caption_dataset.h"
#include "core/model/clip_model.h"
#include "core/train/refine_options.h"
#include "core/train/training_checkpoint.h"

namespace refinery {

class ProcessGroup;

// One optimizer step. Losses are those of the step's forward pass, before
// its update; a loss the method does not use is NaN.
struct StepReport {
  int64_t step = 0;         // steps done, this one included (1-based)
  int64_t total_steps = 0;
  int epoch = 0;            // 0-based
  int64_t batch_rows = 0;   // pairs in the (global) batch (less than the batch size when images were skipped)
  double loss = 0, loss_rafa = 0, loss_hycd = 0, loss_contrastive = 0, loss_align = 0;
  double lr = 0;
  double samples_per_second = 0;  // this step, data wait included
  double data_seconds = 0;        // time the step waited for its batch
  double step_seconds = 0;
  double communication_seconds = 0;  // in collectives (data parallel)
  double eta_seconds = 0;
  int64_t images_skipped = 0;     // so far in this run, resumed part included
};

// Data parallel, every rank calls every callback with the global values
// (losses, rows, skipped images), except on_checkpoint, which only the rank
// that writes (0) calls, and on_log, which tells each rank's own news.
// should_stop is polled on every rank; any rank's true stops them all at the
// same step.
struct TrainerCallbacks {
  std::function<void(const StepReport&)> on_step;
  // After `step` steps (0 = the base model, before any update).
  std::function<void(int64_t step, const std::map<std::string, double>& metrics)> on_eval;
  std::function<void(const TrainingCheckpointInfo& written, const std::vector<TrainingCheckpointInfo>& removed)>
      on_checkpoint;
  // After the last step of every epoch but the run's last (`epoch` from 1,
  // `step` = the steps done): the weights are what a run of `epoch` epochs
  // ends with. Called before that step's periodic checkpoint, so a run that
  // crashes inside it redoes the epoch's end and calls it again.
  std::function<void(int32_t epoch, int64_t step)> on_epoch_end;
  std::function<void(const std::string& message)> on_log;
  // Polled before every step and between evaluation chunks: true stops the
  // run after writing a checkpoint of where it is.
  std::function<bool()> should_stop;
};

enum class TrainOutcome { kFinished, kStopped };

class RefineTrainer {
 public:
  // `base` holds the starting weights (fp32); the trainer trains it in place
  // on `device` and keeps a frozen copy as the teacher. Checkpoints go to
  // `checkpoint_dir`; when it already holds one, run() resumes from the
  // newest. INVALID_ARGUMENT for bad options or a data set too small for
  // the batch size.
  //
  // With a `group` of W > 1 ranks (data parallel; it must outlive the
  // trainer), every rank constructs its trainer with the same base, data and
  // options; each loads and runs its 1/W of every batch, and the steps equal
  // one process's on the whole batch (refine_step.h). Rank 0 alone writes
  // checkpoints into `checkpoint_dir`; it resumes from its newest, whatever
  // W wrote it, and hands the weights and optimizer state to the others, so
  // only rank 0 needs the folder. The batch size must divide by W.
  RefineTrainer(ClipModel base, std::shared_ptr<const CaptionDataset> data, RefineOptions options,
                c10::Device device, std::string checkpoint_dir, ProcessGroup* group = nullptr);
  ~RefineTrainer();

  int64_t total_steps() const { return total_steps_; }
  int64_t steps_per_epoch() const;
  size_t train_images() const;
  size_t val_images() const;
  bool uses_bf16() const { return bf16_; }

  // Trains until the last step (kFinished) or until should_stop() (kStopped).
  // Throws refinery::Error when the run cannot go on (too many undecodable
  // images, a non-finite loss, ...), naming the reason.
  TrainOutcome run(const TrainerCallbacks& callbacks);

  // The trained weights (on the training device).
  ClipModel& student() { return student_; }
  // The latest evaluation (empty before the first).
  const std::map<std::string, double>& last_metrics() const { return last_metrics_; }

  // Evaluates `model` on the validation split (what on_eval reports).
  std::map<std::string, double> evaluate(const TrainerCallbacks& callbacks);

 private:
  struct State;
  void checkpoint(int64_t step, const TrainerCallbacks& callbacks);
  // Where run() starts: rank 0's newest checkpoint, its weights and
  // optimizer state given to every rank.
  int64_t restore(const TrainerCallbacks& callbacks);
  // Sums `values` over the ranks (in place; nothing without a group).
  void sum_over_ranks(std::vector<int64_t>& values);
  bool writes() const;  // rank 0, or no group

  ClipModel student_{nullptr};
  ClipModel teacher_{nullptr};
  std::shared_ptr<const CaptionDataset> data_;
  RefineOptions options_;
  c10::Device device_;
  std::string checkpoint_dir_;
  bool bf16_ = false;
  int64_t total_steps_ = 0;
  int64_t images_skipped_ = 0;
  int64_t last_checkpoint_step_ = -1;
  std::map<std::string, double> last_metrics_;
  std::unique_ptr<State> state_;
  ProcessGroup* group_ = nullptr;  // null, or W > 1 ranks
};

}  // namespace refinery
