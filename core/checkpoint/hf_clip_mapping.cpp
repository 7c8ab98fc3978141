#include <torch/torch.h>

#include <regex>

#include "core/base/error.h"
#include "core/checkpoint/state_dict.h"

namespace refinery {
namespace {

// Per-block renames shared by both towers (HF suffix -> open_clip suffix).
const std::vector<std::pair<std::string, std::string>>& block_renames() {
  static const std::vector<std::pair<std::string, std::string>> kRenames = {
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
  return kRenames;
}

// Top-level renames (HF -> open_clip); the two projections are transposed.
const std::vector<std::pair<std::string, std::string>>& top_renames() {
  static const std::vector<std::pair<std::string, std::string>> kRenames = {
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
  return kRenames;
}

const std::pair<std::string, std::string> kTowers[] = {
    {"text_model.encoder.layers.", "transformer.resblocks."},
    {"vision_model.encoder.layers.", "visual.transformer.resblocks."},
};

}  // namespace

ShapeMap shapes_of(const StateDict& state) {
  ShapeMap shapes;
  for (const auto& [k, v] : state) shapes[k] = v.sizes().vec();
  return shapes;
}

bool looks_like_hf_state_dict(const StateDict& state) {
  return state.count("text_model.embeddings.token_embedding.weight") != 0 ||
         state.count("vision_model.embeddings.patch_embedding.weight") != 0;
}

StateDict hf_to_open_clip(const StateDict& hf, const std::string& source) {
  StateDict out;
  std::map<std::string, std::array<at::Tensor, 3>> qkv;  // open_clip block prefix -> q, k, v (weight or bias)
  for (const auto& [key, value] : hf) {
    if (key.size() >= 12 && key.compare(key.size() - 12, 12, "position_ids") == 0) continue;  // HF buffer
    bool done = false;
    for (const auto& [from, to] : top_renames()) {
      if (key == from) {
        out[to] = value;
        done = true;
      }
    }
    if (key == "text_projection.weight") {
      out["text_projection"] = value.t().contiguous();
      done = true;
    } else if (key == "visual_projection.weight") {
      out["visual.proj"] = value.t().contiguous();
      done = true;
    }
    for (const auto& [hf_prefix, oc_prefix] : kTowers) {
      if (done || key.rfind(hf_prefix, 0) != 0) continue;
      const size_t dot = key.find('.', hf_prefix.size());
      const std::string index = key.substr(hf_prefix.size(), dot - hf_prefix.size());
      const std::string rest = key.substr(dot + 1);
      const std::string block = oc_prefix + index + ".";
      static const std::regex kQkv(R"(self_attn\.([qkv])_proj\.(weight|bias))");
      std::smatch m;
      if (std::regex_match(rest, m, kQkv)) {
        const int slot = m[1] == "q" ? 0 : (m[1] == "k" ? 1 : 2);
        qkv[block + "attn.in_proj_" + std::string(m[2])][slot] = value;
        done = true;
      } else {
        for (const auto& [from, to] : block_renames()) {
          if (rest == from) {
            out[block + to] = value;
            done = true;
          }
        }
      }
    }
    if (!done) throw invalid_argument(source + ": unexpected key '" + key + "' in Hugging Face CLIP weights");
  }
  for (auto& [key, parts] : qkv) {
    static const char* kNames[] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; i < 3; ++i) {
      if (!parts[i].defined()) {
        throw invalid_argument(source + ": missing " + kNames[i] + " for '" + key + "' in Hugging Face CLIP weights");
      }
    }
    out[key] = torch::cat({parts[0], parts[1], parts[2]}, 0);
  }
  return out;
}

StateDict open_clip_to_hf(const StateDict& oc) {
  StateDict out;
  for (const auto& [key, value] : oc) {
    bool done = false;
    for (const auto& [hf_name, oc_name] : top_renames()) {
      if (key == oc_name) {
        out[hf_name] = value;
        done = true;
      }
    }
    if (key == "text_projection") {
      out["text_projection.weight"] = value.t().contiguous();
      done = true;
    } else if (key == "visual.proj") {
      out["visual_projection.weight"] = value.t().contiguous();
      done = true;
    }
    for (const auto& [hf_prefix, oc_prefix] : kTowers) {
      if (done || key.rfind(oc_prefix, 0) != 0) continue;
      const size_t dot = key.find('.', oc_prefix.size());
      const std::string index = key.substr(oc_prefix.size(), dot - oc_prefix.size());
      const std::string rest = key.substr(dot + 1);
      const std::string block = hf_prefix + index + ".";
      if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
        const std::string kind = rest == "attn.in_proj_weight" ? "weight" : "bias";
        auto parts = value.chunk(3, 0);
        out[block + "self_attn.q_proj." + kind] = parts[0].contiguous();
        out[block + "self_attn.k_proj." + kind] = parts[1].contiguous();
        out[block + "self_attn.v_proj." + kind] = parts[2].contiguous();
        done = true;
      } else {
        for (const auto& [from, to] : block_renames()) {
          if (rest == to) {
            out[block + from] = value;
            done = true;
          }
        }
      }
    }
    if (!done) throw internal_error("no Hugging Face name for key '" + key + "'");
  }
  return out;
}

}  // namespace refinery
