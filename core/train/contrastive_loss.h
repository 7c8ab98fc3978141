// CLIP's own symmetric InfoNCE loss, the `contrastive` baseline of METHOD.md:
//   logits = exp(logit_scale) * norm(f_i) @ norm(f_t)^T,  labels = the diagonal,
//   L = (CE(rows) + CE(columns)) / 2.
// The reference code applies the scale to raw (unnormalised) features; that
// form is kept as an option.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/train/objective_options.h"

namespace refinery {

// f_*: [B, D] student features; logit_scale: the model's log-scale parameter
// (a scalar, receives gradient). float32 math whatever the inputs' dtype;
// returns a float32 scalar. Shape mismatches: INVALID_ARGUMENT.
at::Tensor contrastive_loss(const at::Tensor& f_image, const at::Tensor& f_text, const at::Tensor& logit_scale,
                            const ContrastiveOptions& options);

}  // namespace refinery
