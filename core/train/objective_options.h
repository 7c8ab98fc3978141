// What a refine job's objective is told, without LibTorch: the method, the
// lambdas, and the RaFA, HyCD and contrastive options with METHOD.md's
// defaults, their names and their checks. The losses (rafa_loss.h,
// hycd_loss.h, contrastive_loss.h, refine_objective.h) take these; specs,
// flags and config files fill them without compiling against ATen.
#pragma once

#include <string>

namespace refinery {

// --- RaFA (rafa_loss.h) ---
enum class RafaPrior { kNormal, kUniform };

// "normal" | "uniform"; anything else is INVALID_ARGUMENT naming the value and the choices.
RafaPrior parse_rafa_prior(const std::string& name);
const char* rafa_prior_name(RafaPrior prior);

struct RafaOptions {
  double mu = 0.0;     // prior mean (every dimension)
  double sigma = 1.0;  // prior standard deviation; 0 pins every feature to mu
  RafaPrior prior = RafaPrior::kNormal;
  bool shared = true;  // one sample row per pair shared by image and text; false: independent samples per modality
};

// Throws INVALID_ARGUMENT naming the field: mu finite, sigma finite and >= 0.
void validate_rafa_options(const RafaOptions& options);

// --- HyCD (hycd_loss.h) ---
struct HycdOptions {
  double alpha = 0.5;        // weight of the identity; (1 - alpha) weighs the teacher
  double temperature = 1.0;  // T; the loss is scaled by T^2 so gradients keep their size
};

// Throws INVALID_ARGUMENT naming the field: alpha in [0, 1], temperature finite and > 0.
void validate_hycd_options(const HycdOptions& options);

// --- CLIP's contrastive loss (contrastive_loss.h) ---
struct ContrastiveOptions {
  bool normalize = true;  // false: the reference code's form, scale applied to raw features
};

// --- The objective by method (refine_objective.h) ---
//   clip-refine  lambda_rafa * RaFA + lambda_hycd * HyCD   (the paper's method, default)
//   contrastive  symmetric InfoNCE (CLIP's own loss)
//   self-kd      lambda_hycd * HyCD with alpha = 0 (pure distillation)
//   hycd         lambda_hycd * HyCD
//   rafa         lambda_rafa * RaFA
//   hycd-align   lambda_hycd * HyCD + lambda_rafa * mean ||f_i - f_t||^2 (ablation; collapses)
enum class RefineMethod { kClipRefine, kContrastive, kSelfKd, kHycd, kRafa, kHycdAlign };

// "clip-refine" (also "" -> the default) | "contrastive" | "self-kd" | "hycd" | "rafa" | "hycd-align";
// anything else is INVALID_ARGUMENT naming the value and listing the choices.
RefineMethod parse_refine_method(const std::string& name);
const char* refine_method_name(RefineMethod m);

bool needs_teacher(RefineMethod m);  // HyCD-based methods: clip-refine, self-kd, hycd, hycd-align
bool needs_prior(RefineMethod m);    // RaFA-based methods: clip-refine, rafa

struct RefineObjectiveOptions {
  RefineMethod method = RefineMethod::kClipRefine;
  double lambda_rafa = 1.0;  // weight of RaFA (or of the alignment term in hycd-align)
  double lambda_hycd = 1.0;  // weight of HyCD
  HycdOptions hycd;          // alpha 0.5, T 1 (self-kd forces alpha = 0)
  RafaOptions rafa;          // N(0, 1), shared by the pair
  ContrastiveOptions contrastive;
  // INVALID_ARGUMENT naming the field: hycd.alpha in [0, 1], hycd.temperature > 0,
  // rafa.sigma >= 0, lambdas >= 0; every number finite.
  void validate() const;
};

}  // namespace refinery
