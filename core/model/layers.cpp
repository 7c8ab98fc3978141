#include "core/model/layers.h"

#include <torch/torch.h>

#include <cmath>

namespace refinery {
namespace {
thread_local int skip_depth = 0;
}  // namespace

SkipParameterInit::SkipParameterInit() { ++skip_depth; }
SkipParameterInit::~SkipParameterInit() { --skip_depth; }
bool SkipParameterInit::active() { return skip_depth > 0; }

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  bias = register_parameter("bias", torch::empty({out_features}));
  if (SkipParameterInit::active()) return;
  // As LibTorch's LinearImpl::reset_parameters, draw for draw.
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  torch::nn::init::uniform_(bias, -bound, bound);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (int8 && !torch::GradMode::is_enabled()) return int8->forward(x);
  return torch::nn::functional::linear(x, weight, bias);
}

int64_t LinearImpl::quantize_int8() {
  int8 = std::make_shared<const Int8Linear>(weight, bias);
  return int8->bytes();
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim) {
  weight = register_parameter("weight", torch::empty({num_embeddings, embedding_dim}));
  if (SkipParameterInit::active()) return;
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(weight);
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

}  // namespace refinery
