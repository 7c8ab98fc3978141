#include "core/model/clip_model.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace refinery {
namespace F = torch::nn::functional;

SelfAttentionImpl::SelfAttentionImpl(int64_t width, int64_t heads) : heads_(heads) {
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj = register_module("out_proj", Linear(width, width));
  if (!SkipParameterInit::active()) torch::nn::init::xavier_uniform_(in_proj_weight);
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t B = x.size(0), L = x.size(1), W = x.size(2);
  const int64_t head_dim = W / heads_;
  // [B, L, 3W] -> 3 x [B, heads, L, head_dim]
  auto projected = in_proj_int8 && !torch::GradMode::is_enabled() ? in_proj_int8->forward(x)
                                                                  : F::linear(x, in_proj_weight, in_proj_bias);
  auto qkv = projected.view({B, L, 3, heads_, head_dim}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  torch::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  // Fused kernels (flash / memory-efficient on CUDA) where available.
  out = at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt);
#else
  // Scale the scores in place rather than q: one buffer fewer.
  auto scores = torch::matmul(q, k.transpose(-2, -1)).mul_(1.0 / std::sqrt(static_cast<double>(head_dim)));
  if (mask.defined()) scores.add_(mask);
  out = torch::matmul(scores.softmax(-1), v);
#endif
  out = out.transpose(1, 2).reshape({B, L, W});
  return out_proj->forward(out);
}

int64_t SelfAttentionImpl::quantize_int8() {
  in_proj_int8 = std::make_shared<const Int8Linear>(in_proj_weight, in_proj_bias);
  return in_proj_int8->bytes() + out_proj->quantize_int8();
}

MlpImpl::MlpImpl(int64_t width, int64_t hidden, bool quick_gelu) : quick_gelu_(quick_gelu) {
  c_fc = register_module("c_fc", Linear(width, hidden));
  c_proj = register_module("c_proj", Linear(hidden, width));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  auto h = c_fc->forward(x);
  if (!quick_gelu_) {
    h = F::gelu(h);
  } else if (torch::GradMode::is_enabled()) {
    h = h * torch::sigmoid(1.702 * h);
  } else {
    // Inference: the same QuickGELU with one temporary instead of three
    // (every fresh activation-sized buffer costs page faults and bandwidth).
    h.mul_(h.mul(1.702).sigmoid_());
  }
  return c_proj->forward(h);
}

ResidualAttentionBlockImpl::ResidualAttentionBlockImpl(const ResidualAttentionBlockOptions& o) {
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.width()}).eps(o.layer_norm_eps())); };
  ln_1 = register_module("ln_1", ln());
  attn = register_module("attn", SelfAttention(o.width(), o.heads()));
  ln_2 = register_module("ln_2", ln());
  const auto hidden = static_cast<int64_t>(std::lround(o.width() * o.mlp_ratio()));
  mlp = register_module("mlp", Mlp(o.width(), hidden, o.quick_gelu()));
}

torch::Tensor ResidualAttentionBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  if (torch::GradMode::is_enabled()) {
    auto h = x + attn->forward(ln_1->forward(x), mask);
    return h + mlp->forward(ln_2->forward(h));
  }
  // Inference: add the residual into the branch's fresh output buffer. Under
  // autocast the branch is bf16 and x fp32: then add out of place, which
  // promotes to fp32 as the training path does, so that a frozen teacher and
  // its trained copy compute the very same numbers.
  auto residual = [](torch::Tensor branch, const torch::Tensor& skip) {
    return branch.scalar_type() == skip.scalar_type() ? branch.add_(skip) : skip + branch;
  };
  auto h = residual(attn->forward(ln_1->forward(x), mask), x);
  return residual(mlp->forward(ln_2->forward(h)), h);
}

TransformerImpl::TransformerImpl(const TransformerOptions& o) {
  resblocks = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.layers(); ++i) {
    resblocks->push_back(ResidualAttentionBlock(ResidualAttentionBlockOptions(o.width(), o.heads())
                                                    .mlp_ratio(o.mlp_ratio())
                                                    .quick_gelu(o.quick_gelu())
                                                    .layer_norm_eps(o.layer_norm_eps())));
  }
}

torch::Tensor TransformerImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  for (const auto& block : *resblocks) x = block->as<ResidualAttentionBlock>()->forward(x, mask);
  return x;
}

VisionTransformerImpl::VisionTransformerImpl(const VisionConfig& c, int64_t embed_dim, bool quick_gelu, double eps) {
  const int64_t grid = c.image_size / c.patch_size;
  conv1 = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, c.width, c.patch_size).stride(c.patch_size).bias(false)));
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.width));
  // scale * randn, or left for a loader to fill.
  auto random = [&](std::vector<int64_t> shape) {
    return SkipParameterInit::active() ? torch::empty(shape) : scale * torch::randn(shape);
  };
  class_embedding = register_parameter("class_embedding", random({c.width}));
  positional_embedding = register_parameter("positional_embedding", random({grid * grid + 1, c.width}));
  ln_pre = register_module("ln_pre", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width}).eps(eps)));
  transformer = register_module("transformer", Transformer(TransformerOptions(c.width, c.layers, c.heads)
                                                               .mlp_ratio(c.mlp_ratio)
                                                               .quick_gelu(quick_gelu)
                                                               .layer_norm_eps(eps)));
  ln_post = register_module("ln_post", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width}).eps(eps)));
  proj = register_parameter("proj", random({c.width, embed_dim}));
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& pixels) {
  // [B, W, g, g]. Under autocast the convolution comes out in bf16; the
  // residual stream stays in the weights' dtype, as the text tower's does
  // (its embedding lookup is not autocast), so LayerNorm gets what LibTorch
  // 1.13's CPU kernel accepts and only matmuls run in bf16.
  auto x = conv1->forward(pixels).to(class_embedding.scalar_type());
  x = x.flatten(2).transpose(1, 2);                // [B, g*g, W]
  const int64_t B = x.size(0), W = x.size(2);
  auto cls = class_embedding.to(x.dtype()).view({1, 1, W}).expand({B, 1, W});
  x = torch::cat({cls, x}, 1) + positional_embedding.to(x.dtype());
  x = ln_pre->forward(x);
  x = transformer->forward(x);
  x = ln_post->forward(x.select(1, 0));            // class token only
  return torch::matmul(x, proj);
}

ClipModelImpl::ClipModelImpl(const ClipConfig& config) : config_(config) {
  config_.validate();
  const auto& t = config_.text;
  visual = register_module("visual", VisionTransformer(config_.vision, config_.embed_dim, config_.quick_gelu,
                                                       config_.layer_norm_eps));
  token_embedding = register_module("token_embedding", Embedding(t.vocab_size, t.width));
  positional_embedding = register_parameter("positional_embedding", torch::empty({t.context_length, t.width}));
  transformer = register_module("transformer", Transformer(TransformerOptions(t.width, t.layers, t.heads)
                                                               .mlp_ratio(t.mlp_ratio)
                                                               .quick_gelu(config_.quick_gelu)
                                                               .layer_norm_eps(config_.layer_norm_eps)));
  ln_final = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({t.width}).eps(config_.layer_norm_eps)));
  text_projection = register_parameter("text_projection", torch::empty({t.width, config_.embed_dim}));
  logit_scale = register_parameter("logit_scale", torch::full({}, std::log(1.0 / 0.07)));
  if (SkipParameterInit::active()) return;
  torch::nn::init::normal_(positional_embedding, 0.0, 0.01);
  torch::nn::init::normal_(text_projection, 0.0, 1.0 / std::sqrt(static_cast<double>(t.width)));
}

torch::Tensor ClipModelImpl::causal_mask(int64_t length, const torch::Device& device, torch::Dtype dtype) {
  const int64_t full = config_.text.context_length;
  if (!mask_cache_.defined() || mask_cache_.device() != device || mask_cache_.scalar_type() != dtype) {
    mask_cache_ = torch::full({full, full}, -std::numeric_limits<float>::infinity(),
                              torch::TensorOptions().dtype(dtype).device(device))
                      .triu_(1);
  }
  return mask_cache_.narrow(0, 0, length).narrow(1, 0, length);
}

torch::Tensor ClipModelImpl::encode_image(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.dim() == 4 && pixels.size(1) == 3, "encode_image expects [B, 3, H, W] pixels, got ",
              pixels.sizes());
  return visual->forward(pixels);
}

torch::Tensor ClipModelImpl::encode_text(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) <= config_.text.context_length,
              "encode_text expects [B, <=", config_.text.context_length, "] tokens, got ", tokens.sizes());
  const auto ids = tokens.to(torch::kLong);
  const auto eot = ids.argmax(-1);                       // reference: EOT is the largest id
  const int64_t length = eot.max().item<int64_t>() + 1;  // causal: later positions never affect these
  auto x = token_embedding->forward(ids.narrow(1, 0, length));
  x = x + positional_embedding.narrow(0, 0, length).to(x.dtype());
  x = transformer->forward(x, causal_mask(length, x.device(), x.scalar_type()));
  const auto rows = torch::arange(x.size(0), torch::TensorOptions().dtype(torch::kLong).device(x.device()));
  x = ln_final->forward(x.index({rows, eot.to(x.device())}));  // LayerNorm is per token: gather first
  return torch::matmul(x, text_projection);
}

int64_t ClipModelImpl::quantize_int8() {
  if (quantized_int8_) return 0;
  int64_t bytes = 0;
  for (const Transformer& tower : {visual->transformer, transformer}) {
    for (const auto& module : *tower->resblocks) {
      auto block = module->as<ResidualAttentionBlock>();
      bytes += block->attn->quantize_int8();
      bytes += block->mlp->c_fc->quantize_int8();
      bytes += block->mlp->c_proj->quantize_int8();
    }
  }
  quantized_int8_ = true;
  return bytes;
}

void ClipModelImpl::reset_parameters_random(uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  const auto& t = config_.text;
  const auto& v = config_.vision;
  torch::nn::init::normal_(token_embedding->weight, 0.0, 0.02);
  torch::nn::init::normal_(positional_embedding, 0.0, 0.01);
  auto init_tower = [](Transformer& tr, int64_t width, int64_t layers) {
    const double proj_std = std::pow(width, -0.5) * std::pow(2.0 * layers, -0.5);
    const double attn_std = std::pow(width, -0.5);
    const double fc_std = std::pow(2.0 * width, -0.5);
    for (const auto& m : *tr->resblocks) {
      auto block = m->as<ResidualAttentionBlock>();
      torch::nn::init::normal_(block->attn->in_proj_weight, 0.0, attn_std);
      block->attn->in_proj_bias.zero_();
      torch::nn::init::normal_(block->attn->out_proj->weight, 0.0, proj_std);
      block->attn->out_proj->bias.zero_();
      torch::nn::init::normal_(block->mlp->c_fc->weight, 0.0, fc_std);
      block->mlp->c_fc->bias.zero_();
      torch::nn::init::normal_(block->mlp->c_proj->weight, 0.0, proj_std);
      block->mlp->c_proj->bias.zero_();
    }
  };
  init_tower(transformer, t.width, t.layers);
  init_tower(visual->transformer, v.width, v.layers);
  torch::nn::init::normal_(text_projection, 0.0, std::pow(t.width, -0.5));
  const double scale = std::pow(v.width, -0.5);
  visual->class_embedding.normal_(0.0, scale);
  visual->positional_embedding.normal_(0.0, scale);
  visual->proj.normal_(0.0, scale);
  torch::nn::init::kaiming_uniform_(visual->conv1->weight, std::sqrt(5.0));
  logit_scale.fill_(std::log(1.0 / 0.07));
}

}  // namespace refinery
