#include "core/train/objective_options.h"

#include <cmath>

#include "core/base/error.h"

namespace refinery {
namespace {

struct MethodName {
  RefineMethod method;
  const char* name;
};

constexpr MethodName kMethods[] = {
    {RefineMethod::kClipRefine, "clip-refine"}, {RefineMethod::kContrastive, "contrastive"},
    {RefineMethod::kSelfKd, "self-kd"},         {RefineMethod::kHycd, "hycd"},
    {RefineMethod::kRafa, "rafa"},              {RefineMethod::kHycdAlign, "hycd-align"},
};

std::string method_choices() {
  std::string s;
  for (const auto& m : kMethods) s += (s.empty() ? "" : ", ") + std::string(m.name);
  return s;
}

void check_lambda(double value, const char* field) {
  if (!std::isfinite(value) || value < 0) {
    throw invalid_argument(std::string(field) + " must be finite and >= 0, got " + std::to_string(value));
  }
}

}  // namespace

RafaPrior parse_rafa_prior(const std::string& name) {
  if (name == "normal") return RafaPrior::kNormal;
  if (name == "uniform") return RafaPrior::kUniform;
  throw invalid_argument("unknown RaFA prior '" + name + "' (choices: normal, uniform)");
}

const char* rafa_prior_name(RafaPrior prior) { return prior == RafaPrior::kUniform ? "uniform" : "normal"; }

void validate_rafa_options(const RafaOptions& options) {
  if (!std::isfinite(options.mu)) {
    throw invalid_argument("rafa.mu must be finite, got " + std::to_string(options.mu));
  }
  if (!std::isfinite(options.sigma) || options.sigma < 0) {
    throw invalid_argument("rafa.sigma must be finite and >= 0, got " + std::to_string(options.sigma));
  }
}

void validate_hycd_options(const HycdOptions& options) {
  if (!std::isfinite(options.alpha) || options.alpha < 0 || options.alpha > 1) {
    throw invalid_argument("hycd.alpha must be in [0, 1], got " + std::to_string(options.alpha));
  }
  if (!std::isfinite(options.temperature) || options.temperature <= 0) {
    throw invalid_argument("hycd.temperature must be finite and > 0, got " + std::to_string(options.temperature));
  }
}

RefineMethod parse_refine_method(const std::string& name) {
  if (name.empty()) return RefineMethod::kClipRefine;
  for (const auto& m : kMethods) {
    if (name == m.name) return m.method;
  }
  throw invalid_argument("unknown method '" + name + "' (choices: " + method_choices() + ")");
}

const char* refine_method_name(RefineMethod m) {
  for (const auto& entry : kMethods) {
    if (entry.method == m) return entry.name;
  }
  return "unknown";
}

bool needs_teacher(RefineMethod m) {
  return m == RefineMethod::kClipRefine || m == RefineMethod::kSelfKd || m == RefineMethod::kHycd ||
         m == RefineMethod::kHycdAlign;
}

bool needs_prior(RefineMethod m) { return m == RefineMethod::kClipRefine || m == RefineMethod::kRafa; }

void RefineObjectiveOptions::validate() const {
  check_lambda(lambda_rafa, "lambda_rafa");
  check_lambda(lambda_hycd, "lambda_hycd");
  validate_hycd_options(hycd);
  validate_rafa_options(rafa);
}

}  // namespace refinery
