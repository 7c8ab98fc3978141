// The training objective of a refine job, selected by --method (METHOD.md
// "Total objective" and "Baselines"; the options: objective_options.h):
//   clip-refine  lambda_rafa * RaFA + lambda_hycd * HyCD   (the paper's method, default)
//   contrastive  symmetric InfoNCE (CLIP's own loss)
//   self-kd      lambda_hycd * HyCD with alpha = 0 (pure distillation)
//   hycd         lambda_hycd * HyCD
//   rafa         lambda_rafa * RaFA
//   hycd-align   lambda_hycd * HyCD + lambda_rafa * mean ||f_i - f_t||^2 (ablation; collapses)
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/train/contrastive_loss.h"
#include "core/train/hycd_loss.h"
#include "core/train/objective_options.h"
#include "core/train/rafa_loss.h"

namespace refinery {

struct ObjectiveTerms {
  at::Tensor total;  // what backward() runs on (float32 scalar)
  // Unweighted values; undefined when the method does not use them.
  at::Tensor rafa, hycd, contrastive, align;
};

// f_*: student raw projected features [B, D]; g_*: teacher features (may be
// undefined when !needs_teacher); z_*: prior samples (undefined when
// !needs_prior); logit_scale: the student's parameter (used by contrastive
// only, may be undefined otherwise). A missing input the method needs is
// INVALID_ARGUMENT naming it and the method.
ObjectiveTerms compute_refine_objective(const RefineObjectiveOptions& options, const at::Tensor& f_image,
                                        const at::Tensor& f_text, const at::Tensor& g_image, const at::Tensor& g_text,
                                        const at::Tensor& z_image, const at::Tensor& z_text,
                                        const at::Tensor& logit_scale);

}  // namespace refinery
