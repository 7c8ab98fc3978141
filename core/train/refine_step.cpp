#include "core/train/refine_step.h"

#include <chrono>
#include <limits>

#include <torch/torch.h>

#include "core/distributed/process_group.h"
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
                       c10::Device device, bool bf16, ProcessGroup* group)
    : student_(std::move(student)),
      teacher_(std::move(teacher)),
      optimizer_(optimizer),
      options_(options),
      device_(device),
      bf16_(bf16),
      group_(group != nullptr && group->world_size() > 1 ? group : nullptr) {
  for (auto& p : optimizer_.params()) parameters_.push_back(p.value);
}

at::Tensor RefineStep::gather(const at::Tensor& local, int64_t* offset) {
  if (offset != nullptr) *offset = 0;
  if (!group_ || !local.defined()) return local;
  std::vector<int64_t> counts;
  at::Tensor all = group_->all_gather_rows(local.detach(), &counts);
  if (offset != nullptr) {
    for (int r = 0; r < group_->rank(); ++r) *offset += counts[r];
  }
  return all;
}

at::Tensor RefineStep::gather_with_grad(const at::Tensor& local) {
  if (!group_) return local;
  int64_t offset = 0;
  const at::Tensor all = gather(local, &offset);
  const int64_t end = offset + local.size(0);
  return torch::cat({all.slice(0, 0, offset), local, all.slice(0, end, all.size(0))});
}

void RefineStep::reduce_gradients() {
  if (!group_) return;
  // Each rank's backward gave the parameters the gradient of the global
  // loss through its own rows; their sum is the single-process gradient.
  // logit_scale enters the loss directly, not through the rows, so every
  // rank got its whole gradient: it is divided by W before the sum.
  if (student_->logit_scale.grad().defined()) student_->logit_scale.mutable_grad().div_(group_->world_size());
  // A parameter some rank has no gradient for (all its images failed to
  // decode) takes zeros there; one no rank has stays without, as in one
  // process (AdamW skips it).
  const int64_t n = static_cast<int64_t>(parameters_.size());
  at::Tensor defined = torch::zeros({n}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
  for (int64_t i = 0; i < n; ++i) {
    if (parameters_[i].grad().defined()) defined[i] = 1.0f;
  }
  std::vector<at::Tensor> mask = {defined};
  group_->all_reduce_sum(mask);
  const at::Tensor anywhere = mask[0].gt(0).to(torch::kCPU);
  std::vector<at::Tensor> grads;
  for (int64_t i = 0; i < n; ++i) {
    if (!anywhere[i].item<bool>()) continue;
    at::Tensor& g = parameters_[i].mutable_grad();
    if (!g.defined()) g = torch::zeros_like(parameters_[i]);
    grads.push_back(g);
  }
  group_->all_reduce_sum(grads);
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
  const int64_t local_rows = pixels.size(0);
  const int64_t micro = options_.micro_batch_size;
  const double comm_before = group_ ? group_->stats().seconds : 0.0;
  ObjectiveTerms terms;
  // Under bf16 the encoders run in autocast and the objective in fp32
  // outside it (features cast up), as torch.autocast users write it.
  const auto fp32 = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; };
  int64_t rows = local_rows;  // of the global batch
  if (micro <= 0 || micro >= local_rows) {
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
    if (group_) {
      f_i = gather_with_grad(f_i);
      f_t = gather_with_grad(f_t);
      g_i = gather(g_i);
      g_t = gather(g_t);
      rows = f_i.size(0);
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
      for (int64_t b = 0; b < local_rows; b += micro) {
        const int64_t e = std::min(local_rows, b + micro);
        fi.push_back(student_->encode_image(pixels.slice(0, b, e)));
        ft.push_back(student_->encode_text(tokens.slice(0, b, e)));
      }
      mark(&out.student_forward_s);
      if (teacher_) {
        for (int64_t b = 0; b < local_rows; b += micro) {
          const int64_t e = std::min(local_rows, b + micro);
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
    // Data parallel: the other ranks' rows join; this rank's are at `offset`.
    int64_t offset = 0;
    if (group_) {
      f_i = gather(f_i, &offset);
      f_t = gather(f_t);
      g_i = gather(g_i);
      g_t = gather(g_t);
      rows = f_i.size(0);
    }
    f_i.requires_grad_(true);
    f_t.requires_grad_(true);
    if (needs_prior(method)) {
      std::tie(z_i, z_t) = sample_rafa_prior(options_.objective.rafa, rows, f_i.size(1), options_.seed, step, device_);
    }
    terms = compute_refine_objective(options_.objective, f_i, f_t, g_i, g_t, z_i, z_t, student_->logit_scale);
    optimizer_.zero_grad();
    terms.total.backward();  // to the features (and logit_scale, which the contrastive loss uses directly)
    const torch::Tensor grad_i = f_i.grad().slice(0, offset, offset + local_rows);
    const torch::Tensor grad_t = f_t.grad().slice(0, offset, offset + local_rows);
    for (int64_t b = 0; b < local_rows; b += micro) {
      const int64_t e = std::min(local_rows, b + micro);
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
  reduce_gradients();
  out.global_rows = rows;
  if (group_) out.communication_s = group_->stats().seconds - comm_before;
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
