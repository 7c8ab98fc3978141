#include "core/train/adamw.h"

#include <cmath>

#include <torch/torch.h>

namespace refinery {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> named_parameters, AdamWOptions options)
    : options_(options) {
  params_.reserve(named_parameters.size());
  for (auto& [name, value] : named_parameters) {
    Param p;
    p.name = name;
    p.value = value;
    p.exp_avg = torch::zeros_like(value, torch::MemoryFormat::Preserve);
    p.exp_avg_sq = torch::zeros_like(value, torch::MemoryFormat::Preserve);
    params_.push_back(std::move(p));
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) {
    auto& g = p.value.mutable_grad();
    if (g.defined()) {
      g = at::Tensor();  // as set_to_none=True: the next backward allocates
    }
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double b1 = options_.beta1(), b2 = options_.beta2();
  for (auto& p : params_) {
    const at::Tensor& grad = p.value.grad();
    if (!grad.defined()) continue;
    ++p.steps;
    const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(p.steps));
    const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(p.steps));
    const double step_size = lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    p.value.mul_(1.0 - lr * options_.weight_decay());
    p.exp_avg.lerp_(grad, 1.0 - b1);
    p.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
    at::Tensor denom = (p.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps());
    p.value.addcdiv_(p.exp_avg, denom, -step_size);
  }
}

}  // namespace refinery
