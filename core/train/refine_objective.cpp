#include "core/train/refine_objective.h"

#include <torch/torch.h>

#include <cmath>

#include "core/base/error.h"

namespace refinery {
namespace {

void require(const at::Tensor& t, const char* name, RefineMethod method) {
  if (!t.defined()) {
    throw invalid_argument(std::string(name) + " is required by method '" + refine_method_name(method) +
                           "' but was not given");
  }
}

}  // namespace

ObjectiveTerms compute_refine_objective(const RefineObjectiveOptions& options, const at::Tensor& f_image,
                                        const at::Tensor& f_text, const at::Tensor& g_image, const at::Tensor& g_text,
                                        const at::Tensor& z_image, const at::Tensor& z_text,
                                        const at::Tensor& logit_scale) {
  options.validate();
  const RefineMethod method = options.method;
  require(f_image, "f_image", method);
  require(f_text, "f_text", method);
  if (needs_teacher(method)) {
    require(g_image, "teacher g_image", method);
    require(g_text, "teacher g_text", method);
  }
  if (needs_prior(method)) {
    require(z_image, "prior z_image", method);
    require(z_text, "prior z_text", method);
  }

  ObjectiveTerms terms;
  switch (method) {
    case RefineMethod::kClipRefine:
      terms.rafa = rafa_loss(f_image, f_text, z_image, z_text);
      terms.hycd = hycd_loss(f_image, f_text, g_image, g_text, options.hycd);
      terms.total = options.lambda_rafa * terms.rafa + options.lambda_hycd * terms.hycd;
      break;
    case RefineMethod::kContrastive:
      require(logit_scale, "logit_scale", method);
      terms.contrastive = contrastive_loss(f_image, f_text, logit_scale, options.contrastive);
      terms.total = terms.contrastive;
      break;
    case RefineMethod::kSelfKd: {
      HycdOptions pure = options.hycd;
      pure.alpha = 0.0;
      terms.hycd = hycd_loss(f_image, f_text, g_image, g_text, pure);
      terms.total = options.lambda_hycd * terms.hycd;
      break;
    }
    case RefineMethod::kHycd:
      terms.hycd = hycd_loss(f_image, f_text, g_image, g_text, options.hycd);
      terms.total = options.lambda_hycd * terms.hycd;
      break;
    case RefineMethod::kRafa:
      terms.rafa = rafa_loss(f_image, f_text, z_image, z_text);
      terms.total = options.lambda_rafa * terms.rafa;
      break;
    case RefineMethod::kHycdAlign:
      terms.hycd = hycd_loss(f_image, f_text, g_image, g_text, options.hycd);
      terms.align = pair_alignment_loss(f_image, f_text);
      terms.total = options.lambda_hycd * terms.hycd + options.lambda_rafa * terms.align;
      break;
  }
  return terms;
}

}  // namespace refinery
