#include "core/train/refine_options.h"

#include <cmath>
#include <sstream>

#include "core/base/error.h"

namespace refinery {
namespace {

std::string num(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

void require(bool ok, const std::string& field, const std::string& value, const std::string& rule) {
  if (!ok) throw invalid_argument("invalid " + field + " " + value + ": " + rule);
}

}  // namespace

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name.empty() || name == "constant") return LrSchedule::kConstant;
  if (name == "cosine") return LrSchedule::kCosine;
  throw invalid_argument("unknown schedule '" + name + "' (choose constant or cosine)");
}

const char* lr_schedule_name(LrSchedule schedule) {
  return schedule == LrSchedule::kCosine ? "cosine" : "constant";
}

TrainingPrecision parse_training_precision(const std::string& name) {
  if (name.empty() || name == "auto" || name == "fp32" || name == "float32") return TrainingPrecision::kFloat32;
  if (name == "bf16" || name == "bfloat16") return TrainingPrecision::kBFloat16;
  throw invalid_argument("unknown precision '" + name + "' (choose fp32 or bf16)");
}

const char* training_precision_name(TrainingPrecision precision) {
  switch (precision) {
    case TrainingPrecision::kFloat32: return "fp32";
    case TrainingPrecision::kBFloat16: return "bf16";
    default: return "fp32";
  }
}

void RefineOptions::validate() const {
  objective.validate();
  require(epochs >= 1 && epochs <= 100000, "epochs", std::to_string(epochs), "must be in [1, 100000]");
  require(max_steps >= 0 && max_steps <= 1'000'000'000, "max_steps", std::to_string(max_steps),
          "must be in [0, 1e9] (0 = the epochs decide)");
  require(batch_size >= 1 && batch_size <= 65536, "batch_size", std::to_string(batch_size), "must be in [1, 65536]");
  require(micro_batch_size >= 0, "micro_batch_size", std::to_string(micro_batch_size), "must not be negative (0 = the whole batch)");
  require(std::isfinite(lr) && lr > 0 && lr < 1, "lr", num(lr), "must be in (0, 1)");
  require(std::isfinite(weight_decay) && weight_decay >= 0 && weight_decay < 1, "weight_decay", num(weight_decay),
          "must be in [0, 1)");
  require(beta1 >= 0 && beta1 < 1, "beta1", num(beta1), "must be in [0, 1)");
  require(beta2 >= 0 && beta2 < 1, "beta2", num(beta2), "must be in [0, 1)");
  require(eps > 0, "eps", num(eps), "must be positive");
  require(warmup_steps >= 0 && warmup_steps <= 1'000'000'000, "warmup_steps", std::to_string(warmup_steps),
          "must be in [0, 1e9]");
  require(std::isfinite(grad_clip) && grad_clip >= 0, "grad_clip", num(grad_clip), "must be >= 0 (0 = none)");
  require(std::isfinite(val_fraction) && val_fraction >= 0 && val_fraction <= 0.5, "val_fraction", num(val_fraction),
          "must be in [0, 0.5]");
  require(eval_every >= 0, "eval_every", std::to_string(eval_every), "must not be negative");
  require(checkpoint_every >= 0, "checkpoint_every", std::to_string(checkpoint_every), "must not be negative");
  require(keep_checkpoints >= 1 && keep_checkpoints <= 1000, "keep_checkpoints", std::to_string(keep_checkpoints),
          "must be in [1, 1000]");
  require(data_workers >= 0 && data_workers <= 256, "data_workers", std::to_string(data_workers), "must be in [0, 256]");
  require(max_skipped_fraction >= 0 && max_skipped_fraction <= 1, "max_skipped_fraction", num(max_skipped_fraction),
          "must be in [0, 1]");
}

double RefineOptions::lr_at(int64_t step, int64_t total_steps) const {
  if (warmup_steps > 0 && step < warmup_steps) {
    return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  if (schedule == LrSchedule::kCosine) {
    const int64_t span = total_steps - warmup_steps;
    if (span <= 0) return lr;
    const double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(span);
    return 0.5 * lr * (1.0 + std::cos(M_PI * progress));
  }
  return lr;
}

std::map<std::string, std::string> RefineOptions::to_map() const {
  std::map<std::string, std::string> m;
  m["method"] = refine_method_name(objective.method);
  m["epochs"] = std::to_string(epochs);
  if (max_steps > 0) m["max_steps"] = std::to_string(max_steps);
  m["batch_size"] = std::to_string(batch_size);
  if (micro_batch_size > 0) m["micro_batch_size"] = std::to_string(micro_batch_size);
  m["lr"] = num(lr);
  m["weight_decay"] = num(weight_decay);
  m["schedule"] = lr_schedule_name(schedule);
  m["warmup_steps"] = std::to_string(warmup_steps);
  m["grad_clip"] = num(grad_clip);
  m["alpha"] = num(objective.hycd.alpha);
  m["temperature"] = num(objective.hycd.temperature);
  m["lambda_rafa"] = num(objective.lambda_rafa);
  m["lambda_hycd"] = num(objective.lambda_hycd);
  m["rafa_mu"] = num(objective.rafa.mu);
  m["rafa_sigma"] = num(objective.rafa.sigma);
  m["rafa_prior"] = objective.rafa.prior == RafaPrior::kUniform ? "uniform" : "normal";
  m["seed"] = std::to_string(seed);
  m["val_fraction"] = num(val_fraction);
  m["precision"] = training_precision_name(precision);
  return m;
}

}  // namespace refinery
