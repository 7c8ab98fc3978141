#include "core/checkpoint/hf_clip_names.h"

#include <array>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "core/base/error.h"

namespace refinery {
namespace {

// Per-block renames shared by both towers (HF suffix -> open_clip suffix).
constexpr std::pair<const char*, const char*> kBlockRenames[] = {
    {"self_attn.out_proj.weight", "attn.out_proj.weight"},
    {"self_attn.out_proj.bias", "attn.out_proj.bias"},
    {"layer_norm1.weight", "ln_1.weight"},
    {"layer_norm1.bias", "ln_1.bias"},
    {"layer_norm2.weight", "ln_2.weight"},
    {"layer_norm2.bias", "ln_2.bias"},
    {"mlp.fc1.weight", "mlp.c_fc.weight"},
    {"mlp.fc1.bias", "mlp.c_fc.bias"},
    {"mlp.fc2.weight", "mlp.c_proj.weight"},
    {"mlp.fc2.bias", "mlp.c_proj.bias"},
};

// Top-level renames (HF -> open_clip), copied as they are.
constexpr std::pair<const char*, const char*> kTopRenames[] = {
    {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
    {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
    {"text_model.final_layer_norm.weight", "ln_final.weight"},
    {"text_model.final_layer_norm.bias", "ln_final.bias"},
    {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"},
    {"vision_model.embeddings.class_embedding", "visual.class_embedding"},
    {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"},
    {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"},
    {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"},
    {"vision_model.post_layernorm.weight", "visual.ln_post.weight"},
    {"vision_model.post_layernorm.bias", "visual.ln_post.bias"},
    {"logit_scale", "logit_scale"},
};

// Stored as nn.Linear weights ([out, in]); open_clip keeps [in, out].
constexpr std::pair<const char*, const char*> kTransposed[] = {
    {"text_projection.weight", "text_projection"},
    {"visual_projection.weight", "visual.proj"},
};

constexpr std::pair<const char*, const char*> kTowers[] = {
    {"text_model.encoder.layers.", "transformer.resblocks."},
    {"vision_model.encoder.layers.", "visual.transformer.resblocks."},
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

[[noreturn]] void unexpected_key(const std::string& source, const std::string& key) {
  throw invalid_argument(source + ": unexpected key '" + key + "' in Hugging Face CLIP weights");
}

}  // namespace

std::optional<HfNameMapping> map_hf_clip_name(const std::string& key, const std::string& source) {
  if (ends_with(key, "position_ids")) return std::nullopt;  // an HF buffer
  for (const auto& [from, to] : kTopRenames) {
    if (key == from) return HfNameMapping{to, HfNameMapping::Kind::kCopy, 0};
  }
  for (const auto& [from, to] : kTransposed) {
    if (key == from) return HfNameMapping{to, HfNameMapping::Kind::kTranspose, 0};
  }
  for (const auto& [hf_prefix, oc_prefix] : kTowers) {
    const std::string prefix = hf_prefix;
    if (key.rfind(prefix, 0) != 0) continue;
    const size_t dot = key.find('.', prefix.size());
    if (dot == std::string::npos || dot == prefix.size()) unexpected_key(source, key);
    const std::string index = key.substr(prefix.size(), dot - prefix.size());
    if (index.find_first_not_of("0123456789") != std::string::npos) unexpected_key(source, key);
    const std::string rest = key.substr(dot + 1);
    const std::string block = std::string(oc_prefix) + index + ".";
    for (int slot = 0; slot < 3; ++slot) {
      const std::string proj = std::string("self_attn.") + "qkv"[slot] + "_proj.";
      for (const char* kind : {"weight", "bias"}) {
        if (rest == proj + kind) return HfNameMapping{block + "attn.in_proj_" + kind, HfNameMapping::Kind::kQkv, slot};
      }
    }
    for (const auto& [from, to] : kBlockRenames) {
      if (rest == from) return HfNameMapping{block + to, HfNameMapping::Kind::kCopy, 0};
    }
    unexpected_key(source, key);
  }
  unexpected_key(source, key);
}

OpenClipToHf hf_clip_names_for(const std::string& key) {
  for (const auto& [hf, oc] : kTopRenames) {
    if (key == oc) return {{hf}, HfNameMapping::Kind::kCopy};
  }
  for (const auto& [hf, oc] : kTransposed) {
    if (key == oc) return {{hf}, HfNameMapping::Kind::kTranspose};
  }
  for (const auto& [hf_prefix, oc_prefix] : kTowers) {
    const std::string prefix = oc_prefix;
    if (key.rfind(prefix, 0) != 0) continue;
    const size_t dot = key.find('.', prefix.size());
    if (dot == std::string::npos) break;
    const std::string block = std::string(hf_prefix) + key.substr(prefix.size(), dot - prefix.size()) + ".";
    const std::string rest = key.substr(dot + 1);
    for (const char* kind : {"weight", "bias"}) {
      if (rest == std::string("attn.in_proj_") + kind) {
        return {{block + "self_attn.q_proj." + kind, block + "self_attn.k_proj." + kind,
                 block + "self_attn.v_proj." + kind},
                HfNameMapping::Kind::kQkv};
      }
    }
    for (const auto& [hf, oc] : kBlockRenames) {
      if (rest == oc) return {{block + hf}, HfNameMapping::Kind::kCopy};
    }
    break;
  }
  throw internal_error("no Hugging Face name for key '" + key + "'");
}

bool looks_like_hf_clip_names(const ShapeMap& shapes) {
  return shapes.count("text_model.embeddings.token_embedding.weight") != 0 ||
         shapes.count("vision_model.embeddings.patch_embedding.weight") != 0;
}

ShapeMap hf_clip_shapes_to_open_clip(const ShapeMap& hf, const std::string& source) {
  ShapeMap out;
  std::map<std::string, std::array<const std::vector<int64_t>*, 3>> qkv;
  auto put = [&](const std::string& key, std::vector<int64_t> shape, const std::string& from) {
    if (!out.emplace(key, std::move(shape)).second) {
      throw invalid_argument(source + ": '" + from + "' maps to '" + key + "', which another key already gave");
    }
  };
  for (const auto& [key, shape] : hf) {
    const auto mapping = map_hf_clip_name(key, source);
    if (!mapping) continue;
    switch (mapping->kind) {
      case HfNameMapping::Kind::kCopy:
        put(mapping->open_clip_key, shape, key);
        break;
      case HfNameMapping::Kind::kTranspose:
        if (shape.size() != 2) {
          throw invalid_argument(source + ": '" + key + "' has shape " + shape_text(shape) +
                                 "; a projection must be 2-D");
        }
        put(mapping->open_clip_key, {shape[1], shape[0]}, key);
        break;
      case HfNameMapping::Kind::kQkv:
        qkv[mapping->open_clip_key][mapping->qkv_slot] = &shape;
        break;
    }
  }
  for (const auto& [key, parts] : qkv) {
    static const char* kNames[] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; i < 3; ++i) {
      if (parts[i] == nullptr) {
        throw invalid_argument(source + ": missing " + kNames[i] + " for '" + key + "' in Hugging Face CLIP weights");
      }
    }
    const std::vector<int64_t>& q = *parts[0];
    if (q.empty() || *parts[1] != q || *parts[2] != q) {
      throw invalid_argument(source + ": q, k and v projections for '" + key + "' must share one shape with at least " +
                             "one dimension, got " + shape_text(q) + ", " + shape_text(*parts[1]) + ", " +
                             shape_text(*parts[2]));
    }
    if (q[0] > std::numeric_limits<int64_t>::max() / 3) {
      throw invalid_argument(source + ": q projection for '" + key + "' is too large: " + shape_text(q));
    }
    std::vector<int64_t> joined = q;
    joined[0] *= 3;
    put(key, std::move(joined), key);
  }
  return out;
}

}  // namespace refinery
