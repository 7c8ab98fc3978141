// HyCD (hybrid contrastive-distillation), METHOD.md: the student's
// image->text and text->image softmaxes over the batch are pulled towards a
// mix of the ground-truth identity and the frozen teacher's softmax:
//   s = f_i f_t^T / T,  t = g_i g_t^T / T        (raw dot products, no logit_scale)
//   q = alpha I + (1 - alpha) softmax(t, dim=1)
//   KD(s, t) = T^2 sum_ij q_ij (log q_ij - log_softmax(s)_ij) / B    (0 log 0 = 0)
//   L_HyCD = (KD(s, t) + KD(s^T, t^T)) / 2
// alpha = 1 is cross-entropy on the identity (InfoNCE with scale 1 on raw
// features); alpha = 0 is pure distillation, KL(softmax t || softmax s).
#pragma once

#include <ATen/core/Tensor.h>

#include "core/train/objective_options.h"

namespace refinery {

// f_*: student features [B, D]; g_*: teacher features [B, D'] (D' may differ
// from D). The teacher's inputs carry no gradient. float32 math whatever the
// inputs' dtype; returns a float32 scalar. Shape mismatches: INVALID_ARGUMENT.
at::Tensor hycd_loss(const at::Tensor& f_image, const at::Tensor& f_text, const at::Tensor& g_image,
                     const at::Tensor& g_text, const HycdOptions& options);

// Mean over pairs of ||f_i - f_t||^2 (the hycd-align ablation's term), float32.
at::Tensor pair_alignment_loss(const at::Tensor& f_image, const at::Tensor& f_text);

}  // namespace refinery
