#include "core/train/contrastive_loss.h"

#include <torch/torch.h>

#include <sstream>

#include "core/base/error.h"
#include "core/runtime/tensor_shape.h"

namespace refinery {
namespace {

// Rows scaled to unit L2 norm (a zero row stays zero), as F.normalize(eps=1e-12).
at::Tensor l2_normalize(const at::Tensor& x) { return x / x.norm(2, {1}, true).clamp_min(1e-12); }

// Mean over rows of -log_softmax(logits)[i, i].
at::Tensor diagonal_cross_entropy(const at::Tensor& logits) {
  return -torch::log_softmax(logits, 1).diagonal().mean();
}

}  // namespace

at::Tensor contrastive_loss(const at::Tensor& f_image, const at::Tensor& f_text, const at::Tensor& logit_scale,
                            const ContrastiveOptions& options) {
  if (!f_image.defined() || !f_text.defined()) throw invalid_argument("contrastive_loss: f_image/f_text is undefined");
  if (!logit_scale.defined()) throw invalid_argument("contrastive_loss: logit_scale is undefined");
  if (f_image.dim() != 2 || !f_image.sizes().equals(f_text.sizes())) {
    throw invalid_argument("contrastive_loss: f_image " + shape_of(f_image) + " and f_text " + shape_of(f_text) +
                           " must both be [B, D]");
  }
  if (logit_scale.numel() != 1) {
    throw invalid_argument("contrastive_loss: logit_scale must be a scalar, got " + shape_of(logit_scale));
  }
  at::Tensor fi = f_image.to(torch::kFloat32);
  at::Tensor ft = f_text.to(fi.device(), torch::kFloat32);
  if (options.normalize) {
    fi = l2_normalize(fi);
    ft = l2_normalize(ft);
  }
  const at::Tensor scale = logit_scale.to(fi.device(), torch::kFloat32).reshape({}).exp();
  const at::Tensor logits = scale * fi.matmul(ft.t());
  return (diagonal_cross_entropy(logits) + diagonal_cross_entropy(logits.t())) / 2.0;
}

}  // namespace refinery
