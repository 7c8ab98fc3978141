// One CLIP-Refine optimizer step, shared by the trainer and the training
// benchmark: student forward (bf16 autocast when asked), frozen-teacher
// forward without gradients, prior samples for (seed, step), the objective,
// backward, optional gradient clipping and the AdamW update.
//
// Data parallel (a ProcessGroup of W ranks): each rank passes its slice of
// the global batch, in rank order. The features are all-gathered so that
// the objective (its softmaxes, RaFA's mean, every reported loss) runs over
// the whole global batch on every rank, with the gradient flowing through
// the rank's own rows (open_clip's gather_with_grad); the gradients are
// summed over the ranks, and AdamW runs the same update everywhere. The
// step equals the single-process step on the global batch, to float
// rounding, with or without micro-batches.
#pragma once
#include <cstdint>
#include <c10/core/Device.h>
#include "core/model/clip_model.h"
#include "core/train/adamw.h"
#include "core/train/refine_options.h"

namespace refinery {

// Losses of the step's forward pass (before its update); NaN when unused.
struct StepLosses {
  double total = 0, rafa = 0, hycd = 0, contrastive = 0, align = 0;
  // Wall time of the phases (on CUDA only when RefineStep synchronizes).
  double student_forward_s = 0, teacher_forward_s = 0, backward_s = 0, optimizer_s = 0;
  double communication_s = 0;  // in collectives (data parallel only)
  int64_t global_rows = 0;     // rows of the global batch (the local rows in one process)
};

class ProcessGroup;

class RefineStep {
 public:
  // `teacher` may be null for methods that need none. The models must be on
  // `device` already. `group` (may be null: one process) must outlive the step.
  RefineStep(ClipModel student, ClipModel teacher, AdamW& optimizer, const RefineOptions& options, c10::Device device,
             bool bf16, ProcessGroup* group = nullptr);
  // pixels [B, 3, S, S] float, tokens [B, L] int64, on any device: the
  // batch, or with a group this rank's slice of it (B may differ by rank).
  StepLosses run(const at::Tensor& pixels, const at::Tensor& tokens, int64_t step, double lr);
  // Synchronize the device between phases so their times are true (costs a
  // little on CUDA; for benchmarks).
  void set_synchronize_phases(bool on) { synchronize_ = on; }

 private:
  ClipModel student_, teacher_;
  AdamW& optimizer_;
  const RefineOptions& options_;
  c10::Device device_;
  bool bf16_;
  // Data parallel: the global batch's rows, without gradient; `offset`
  // (when given) gets where this rank's rows start.
  at::Tensor gather(const at::Tensor& local, int64_t* offset = nullptr);
  // The same with the gradient flowing to this rank's rows.
  at::Tensor gather_with_grad(const at::Tensor& local);
  // Sums the ranks' gradients (see the .cpp for logit_scale).
  void reduce_gradients();

  bool synchronize_ = false;
  ProcessGroup* group_ = nullptr;
  std::vector<at::Tensor> parameters_;
};

}  // namespace refinery
