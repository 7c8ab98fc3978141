// The CLIP model's Linear and Embedding layers: LibTorch's (same parameter
// names, same initialisation, same forward), except that their random
// initialisation can be skipped. LibTorch's own modules always initialise in
// their constructor, and loading a checkpoint overwrites every value: for
// ViT-B/32 that was 151 M random draws, most of the time from file to
// served model. (Python has torch.nn.utils.skip_init; LibTorch has none.)
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>

#include "core/runtime/int8_linear.h"

namespace refinery {

// While one exists, the CLIP modules constructed on this thread leave their
// parameters uninitialised (torch::empty): for callers that load every
// parameter right after, as the checkpoint reader does.
class SkipParameterInit {
 public:
  SkipParameterInit();
  ~SkipParameterInit();
  SkipParameterInit(const SkipParameterInit&) = delete;
  SkipParameterInit& operator=(const SkipParameterInit&) = delete;
  static bool active();
};

// torch::nn::Linear: weight [out, in], bias [out]; kaiming_uniform(sqrt(5))
// weight and uniform(+-1/sqrt(in)) bias.
//
// quantize_int8() packs the current weight for int8 dynamic quantization
// (int8_linear.h): from then on, forward passes without gradients run in
// int8; with gradients they still use the fp32 parameters, which stay (for
// export and state dicts; a memory-mapped checkpoint's pages are then
// never read again).
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t quantize_int8();  // bytes of the packed weight
  torch::Tensor weight, bias;
  std::shared_ptr<const Int8Linear> int8;
};
TORCH_MODULE(Linear);

// torch::nn::Embedding: weight [num, dim], N(0, 1).
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

}  // namespace refinery
