// One CLIP-Refine optimizer step, shared by the trainer and the training
// benchmark: student forward (bf16 autocast when asked), frozen-teacher
// forward without gradients, prior samples for (seed, step), the objective,
// backward, optional gradient clipping and the AdamW update.
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
};

class RefineStep {
 public:
  // `teacher` may be null for methods that need none. The models must be on
  // `device` already.
  RefineStep(ClipModel student, ClipModel teacher, AdamW& optimizer, const RefineOptions& options, c10::Device device,
             bool bf16);
  // pixels [B, 3, S, S] float, tokens [B, L] int64, on any device.
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
  bool synchronize_ = false;
  std::vector<at::Tensor> parameters_;
};

}  // namespace refinery
