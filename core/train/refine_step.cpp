#include "core/train/refine_step.h"

#include <chrono>
#include <limits>

#include <torch/torch.h>

#include "core/runtime/autocast_guard.h"
#include "core/train/rafa_loss.h"
#include "core/train/refine_objective.h"

namespace refinery {
namespace {

double value_or_nan(const torch::Tensor& t) {
  return t.defined() ? t.item<double>() : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

RefineStep::RefineStep(ClipModel student, ClipModel teacher, AdamW& optimizer, const RefineOptions& options,
                       c10::Device device, bool bf16)
    : student_(std::move(student)),
      teacher_(std::move(teacher)),
      optimizer_(optimizer),
      options_(options),
      device_(device),
      bf16_(bf16) {
  for (auto& p : optimizer_.params()) parameters_.push_back(p.value);
}

StepLosses RefineStep::run(const at::Tensor& pixels_in, const at::Tensor& tokens_in, int64_t step, double lr) {
  using Clock = std::chrono::steady_clock;
  auto mark = [this, last = Clock::now()](double* into) mutable {
    if (synchronize_ && device_.is_cuda()) torch::cuda::synchronize(device_.index() < 0 ? 0 : device_.index());
    const auto now = Clock::now();
    *into = std::chrono::duration<double>(now - last).count();
    last = now;
  };
  StepLosses out;
  const RefineMethod method = options_.objective.method;
  torch::Tensor pixels = pixels_in.to(device_, /*non_blocking=*/true);
  torch::Tensor tokens = tokens_in.to(device_, /*non_blocking=*/true);
  const int64_t rows = pixels.size(0);
  const int64_t micro = options_.micro_batch_size;
  ObjectiveTerms terms;
  // Under bf16 the encoders run in autocast and the objective in fp32
  // outside it (features cast up), as torch.autocast users write it.
  const auto fp32 = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; };
  if (micro <= 0 || micro >= rows) {
    torch::Tensor f_i, f_t, g_i, g_t, z_i, z_t;
    {
      AutocastGuard autocast(device_.type(), bf16_);
      f_i = fp32(student_->encode_image(pixels));
      f_t = fp32(student_->encode_text(tokens));
      mark(&out.student_forward_s);
      if (teacher_) {
        torch::NoGradGuard no_grad;
        g_i = fp32(teacher_->encode_image(pixels));
        g_t = fp32(teacher_->encode_text(tokens));
      }
      mark(&out.teacher_forward_s);
    }
    if (needs_prior(method)) {
      std::tie(z_i, z_t) = sample_rafa_prior(options_.objective.rafa, rows, f_i.size(1), options_.seed, step, device_);
    }
    terms = compute_refine_objective(options_.objective, f_i, f_t, g_i, g_t, z_i, z_t, student_->logit_scale);
    optimizer_.zero_grad();
    terms.total.backward();
    mark(&out.backward_s);
  } else {
    // Gradient caching: the losses couple every pair of the batch (the
    // softmax runs over all of it), so the batch's features are computed
    // first without a graph, micro-batch by micro-batch; the loss and its
    // gradient with respect to the features come from the whole batch; then
    // each micro-batch is run again with a graph and back-propagates its
    // slice of that gradient. Same gradient as one pass over the batch, with
    // the activations of one micro-batch in memory, for one extra forward.
    torch::Tensor f_i, f_t, g_i, g_t, z_i, z_t;
    {
      AutocastGuard autocast(device_.type(), bf16_);
      torch::NoGradGuard no_grad;
      std::vector<torch::Tensor> fi, ft, gi, gt;
      for (int64_t b = 0; b < rows; b += micro) {
        const int64_t e = std::min(rows, b + micro);
        fi.push_back(student_->encode_image(pixels.slice(0, b, e)));
        ft.push_back(student_->encode_text(tokens.slice(0, b, e)));
      }
      mark(&out.student_forward_s);
      if (teacher_) {
        for (int64_t b = 0; b < rows; b += micro) {
          const int64_t e = std::min(rows, b + micro);
          gi.push_back(teacher_->encode_image(pixels.slice(0, b, e)));
          gt.push_back(teacher_->encode_text(tokens.slice(0, b, e)));
        }
        g_i = fp32(torch::cat(gi));
        g_t = fp32(torch::cat(gt));
      }
      mark(&out.teacher_forward_s);
      f_i = fp32(torch::cat(fi));
      f_t = fp32(torch::cat(ft));
    }
    f_i.requires_grad_(true);
    f_t.requires_grad_(true);
    if (needs_prior(method)) {
      std::tie(z_i, z_t) = sample_rafa_prior(options_.objective.rafa, rows, f_i.size(1), options_.seed, step, device_);
    }
    terms = compute_refine_objective(options_.objective, f_i, f_t, g_i, g_t, z_i, z_t, student_->logit_scale);
    optimizer_.zero_grad();
    terms.total.backward();  // to the features (and logit_scale, which the contrastive loss uses directly)
    const torch::Tensor grad_i = f_i.grad(), grad_t = f_t.grad();
    for (int64_t b = 0; b < rows; b += micro) {
      const int64_t e = std::min(rows, b + micro);
      torch::Tensor ci, ct;
      {
        AutocastGuard autocast(device_.type(), bf16_);
        ci = fp32(student_->encode_image(pixels.slice(0, b, e)));
        ct = fp32(student_->encode_text(tokens.slice(0, b, e)));
      }
      torch::autograd::backward({ci, ct}, {grad_i.slice(0, b, e), grad_t.slice(0, b, e)});
    }
    mark(&out.backward_s);
  }
  if (options_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(parameters_, options_.grad_clip);
  optimizer_.step(lr);
  mark(&out.optimizer_s);
  out.total = terms.total.item<double>();
  out.rafa = value_or_nan(terms.rafa);
  out.hycd = value_or_nan(terms.hycd);
  out.contrastive = value_or_nan(terms.contrastive);
  out.align = value_or_nan(terms.align);
  return out;
}

}  // namespace refinery
