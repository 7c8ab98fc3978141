// CLIP with the OpenAI architecture (ViT image tower, causal text
// transformer), written in LibTorch's C++ frontend idiom: an Options struct
// per module, `...Impl` classes registered with TORCH_MODULE. Parameter names
// equal open_clip's state-dict keys, so checkpoints load by name.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "core/model/clip_config.h"
#include "core/model/layers.h"

namespace refinery {

struct ResidualAttentionBlockOptions {
  ResidualAttentionBlockOptions(int64_t width, int64_t heads) : width_(width), heads_(heads) {}
  TORCH_ARG(int64_t, width);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, quick_gelu) = true;
  TORCH_ARG(double, layer_norm_eps) = 1e-5;
};

// Multi-head self-attention with PyTorch's nn.MultiheadAttention parameter
// layout (packed in_proj_weight/in_proj_bias, out_proj), batch-first input.
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t width, int64_t heads);
  // x: [B, L, W]; mask: additive [L, L] or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});
  int64_t quantize_int8();  // the q/k/v and output projections; bytes packed

  torch::Tensor in_proj_weight, in_proj_bias;
  Linear out_proj{nullptr};
  std::shared_ptr<const Int8Linear> in_proj_int8;  // set by quantize_int8

 private:
  int64_t heads_;
};
TORCH_MODULE(SelfAttention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t width, int64_t hidden, bool quick_gelu);
  torch::Tensor forward(const torch::Tensor& x);
  Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  bool quick_gelu_;
};
TORCH_MODULE(Mlp);

class ResidualAttentionBlockImpl : public torch::nn::Module {
 public:
  explicit ResidualAttentionBlockImpl(const ResidualAttentionBlockOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  SelfAttention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(ResidualAttentionBlock);

struct TransformerOptions {
  TransformerOptions(int64_t width, int64_t layers, int64_t heads) : width_(width), layers_(layers), heads_(heads) {}
  TORCH_ARG(int64_t, width);
  TORCH_ARG(int64_t, layers);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, quick_gelu) = true;
  TORCH_ARG(double, layer_norm_eps) = 1e-5;
};

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const TransformerOptions& options);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask = {});
  torch::nn::ModuleList resblocks{nullptr};
};
TORCH_MODULE(Transformer);

class VisionTransformerImpl : public torch::nn::Module {
 public:
  VisionTransformerImpl(const VisionConfig& config, int64_t embed_dim, bool quick_gelu, double layer_norm_eps);
  // pixels: [B, 3, H, W] normalised -> [B, embed_dim] raw projected features.
  torch::Tensor forward(const torch::Tensor& pixels);

  torch::nn::Conv2d conv1{nullptr};
  torch::Tensor class_embedding, positional_embedding, proj;
  torch::nn::LayerNorm ln_pre{nullptr}, ln_post{nullptr};
  Transformer transformer{nullptr};
};
TORCH_MODULE(VisionTransformer);

// Constructed with random weights (LibTorch's module defaults), or with
// uninitialised ones under SkipParameterInit (layers.h), for loading.
class ClipModelImpl : public torch::nn::Module {
 public:
  explicit ClipModelImpl(const ClipConfig& config);

  // [B, 3, S, S] float -> [B, embed_dim], raw projected features.
  torch::Tensor encode_image(const torch::Tensor& pixels);
  // [B, context_length] integer tokens (EOT = largest id, as the reference's
  // argmax assumes) -> [B, embed_dim]. Runs the transformer only up to the
  // longest EOT position in the batch: exact under the causal mask.
  torch::Tensor encode_text(const torch::Tensor& tokens);

  const ClipConfig& config() const { return config_; }
  // Re-initialises every parameter as open_clip's init_parameters does.
  void reset_parameters_random(uint64_t seed);

  // Packs every transformer linear layer (attention q/k/v and output
  // projections, both MLP layers, in both towers) for int8 dynamic
  // quantization: forward passes without gradients then run them in int8
  // (core/runtime/int8_linear.h). The patch convolution, the attention
  // scores, the final projections, LayerNorm and the residual stream stay
  // fp32, and so do the parameters themselves. CPU only; for inference only.
  // Returns the bytes packed.
  int64_t quantize_int8();
  bool quantized_int8() const { return quantized_int8_; }

  VisionTransformer visual{nullptr};
  Embedding token_embedding{nullptr};
  torch::Tensor positional_embedding, text_projection, logit_scale;
  Transformer transformer{nullptr};
  torch::nn::LayerNorm ln_final{nullptr};

 private:
  torch::Tensor causal_mask(int64_t length, const torch::Device& device, torch::Dtype dtype);
  ClipConfig config_;
  torch::Tensor mask_cache_;
  bool quantized_int8_ = false;
};
TORCH_MODULE(ClipModel);

}  // namespace refinery
