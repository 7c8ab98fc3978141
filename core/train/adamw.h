// AdamW with decoupled weight decay, step for step the same arithmetic as
// torch.optim.AdamW (amsgrad off, single-tensor path), over fp32 master
// parameters. Its own class rather than torch::optim::AdamW because a
// training checkpoint must save and restore the moments exactly, and
// LibTorch's optimizer state map is keyed differently across versions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>

namespace refinery {

struct AdamWOptions {
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.1;  // METHOD.md's default, not torch's 1e-2
};

class AdamW {
 public:
  struct Param {
    std::string name;
    at::Tensor value;  // the model's parameter (updated in place)
    at::Tensor exp_avg, exp_avg_sq;
    int64_t steps = 0;  // updates this parameter has had (as torch, per parameter)
  };
  AdamW(std::vector<std::pair<std::string, at::Tensor>> named_parameters, AdamWOptions options = {});

  // One update with learning rate `lr` from the parameters' .grad(); a
  // parameter without a gradient is left alone (as torch does).
  void step(double lr);
  void zero_grad();

  int64_t steps() const { return steps_; }  // step() calls
  void set_steps(int64_t steps) { steps_ = steps; }
  std::vector<Param>& params() { return params_; }
  const AdamWOptions& options() const { return options_; }

 private:
  std::vector<Param> params_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

}  // namespace refinery
