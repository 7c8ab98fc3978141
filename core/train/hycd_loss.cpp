#include "core/train/hycd_loss.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "core/base/error.h"
#include "core/runtime/tensor_shape.h"

namespace refinery {
namespace {

// Both tensors defined, [B, D] each with the same shape.
void check_features(const char* where, const at::Tensor& a, const char* a_name, const at::Tensor& b,
                    const char* b_name) {
  if (!a.defined()) throw invalid_argument(std::string(where) + ": " + a_name + " is undefined");
  if (!b.defined()) throw invalid_argument(std::string(where) + ": " + b_name + " is undefined");
  if (a.dim() != 2) throw invalid_argument(std::string(where) + ": " + a_name + " must be [B, D], got " + shape_of(a));
  if (!a.sizes().equals(b.sizes())) {
    throw invalid_argument(std::string(where) + ": " + a_name + " " + shape_of(a) + " and " + b_name + " " +
                           shape_of(b) + " differ in shape");
  }
}

// T^2 * sum_ij q_ij (log q_ij - log_softmax(s)_ij) / B for logits already divided by T.
at::Tensor distill(const at::Tensor& student_logits, const at::Tensor& teacher_logits, double alpha, double t2) {
  const int64_t batch = student_logits.size(0);
  const at::Tensor eye = torch::eye(batch, student_logits.options());
  const at::Tensor q = alpha * eye + (1.0 - alpha) * torch::softmax(teacher_logits, 1);
  const at::Tensor log_p = torch::log_softmax(student_logits, 1);
  return t2 * (torch::xlogy(q, q) - q * log_p).sum() / static_cast<double>(batch);
}

}  // namespace

at::Tensor hycd_loss(const at::Tensor& f_image, const at::Tensor& f_text, const at::Tensor& g_image,
                     const at::Tensor& g_text, const HycdOptions& options) {
  validate_hycd_options(options);
  check_features("hycd_loss", f_image, "f_image", f_text, "f_text");
  check_features("hycd_loss", g_image, "g_image", g_text, "g_text");
  if (g_image.size(0) != f_image.size(0)) {
    throw invalid_argument("hycd_loss: teacher batch " + shape_of(g_image) + " and student batch " +
                           shape_of(f_image) + " differ in B");
  }
  const double temperature = options.temperature;
  const at::Tensor fi = f_image.to(torch::kFloat32);
  const at::Tensor ft = f_text.to(torch::kFloat32);
  const at::Tensor gi = g_image.detach().to(fi.device(), torch::kFloat32);
  const at::Tensor gt = g_text.detach().to(fi.device(), torch::kFloat32);

  const at::Tensor s = fi.matmul(ft.t()) / temperature;  // image -> text rows
  const at::Tensor t = gi.matmul(gt.t()) / temperature;
  const double t2 = temperature * temperature;
  return (distill(s, t, options.alpha, t2) + distill(s.t(), t.t(), options.alpha, t2)) / 2.0;
}

at::Tensor pair_alignment_loss(const at::Tensor& f_image, const at::Tensor& f_text) {
  check_features("pair_alignment_loss", f_image, "f_image", f_text, "f_text");
  const at::Tensor fi = f_image.to(torch::kFloat32);
  const at::Tensor ft = f_text.to(fi.device(), torch::kFloat32);
  return (fi - ft).pow(2).sum(1).mean();
}

}  // namespace refinery
