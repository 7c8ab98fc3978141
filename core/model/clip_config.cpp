#include "core/model/clip_config.h"

#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/base/assets.h"
#include "core/base/error.h"
#include "core/base/json_integer.h"

namespace refinery {
namespace {

using nlohmann::json;

template <typename T>
T get_or(const json& j, const char* key, T fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return json_integer<T>(j[key], source + ": " + key);
  } else {
    return j[key].get<T>();
  }
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

}  // namespace

json ClipConfig::to_open_clip_json() const {
  json j;
  j["embed_dim"] = embed_dim;
  j["quick_gelu"] = quick_gelu;
  j["vision_cfg"] = {{"image_size", vision.image_size}, {"patch_size", vision.patch_size},
                     {"width", vision.width},           {"layers", vision.layers},
                     {"head_width", vision.width / vision.heads}, {"mlp_ratio", vision.mlp_ratio}};
  j["text_cfg"] = {{"context_length", text.context_length}, {"vocab_size", text.vocab_size},
                   {"width", text.width}, {"heads", text.heads}, {"layers", text.layers},
                   {"mlp_ratio", text.mlp_ratio}};
  if (layer_norm_eps != 1e-5) j["layer_norm_eps"] = layer_norm_eps;
  if (!name.empty()) j["name"] = name;
  return j;
}

ClipConfig ClipConfig::from_open_clip_json(const json& j, const std::string& source) {
  try {
    ClipConfig c;
    c.name = get_or<std::string>(j, "name", "", source);
    c.embed_dim = json_integer<int>(j.at("embed_dim"), source + ": embed_dim");
    c.quick_gelu = get_or<bool>(j, "quick_gelu", false, source);  // open_clip's default is nn.GELU
    c.layer_norm_eps = get_or<double>(j, "layer_norm_eps", 1e-5, source);
    const json& v = j.at("vision_cfg");
    if (v.contains("layers") && v["layers"].is_array()) {
      throw unimplemented(source + ": ResNet vision towers (vision_cfg.layers is a list) are not supported");
    }
    c.vision.image_size = json_integer<int>(v.at("image_size"), source + ": vision_cfg.image_size");
    c.vision.patch_size = get_or<int>(v, "patch_size", 16, source);
    c.vision.width = json_integer<int>(v.at("width"), source + ": vision_cfg.width");
    c.vision.layers = json_integer<int>(v.at("layers"), source + ": vision_cfg.layers");
    const int head_width = get_or<int>(v, "head_width", 64, source);
    if (head_width <= 0) throw invalid_argument(source + ": vision_cfg.head_width must be positive");
    c.vision.heads = std::max(1, c.vision.width / head_width);
    c.vision.mlp_ratio = get_or<double>(v, "mlp_ratio", 4.0, source);
    const json& t = j.at("text_cfg");
    c.text.context_length = get_or<int>(t, "context_length", 77, source);
    c.text.vocab_size = get_or<int>(t, "vocab_size", 49408, source);
    c.text.width = json_integer<int>(t.at("width"), source + ": text_cfg.width");
    c.text.heads = get_or<int>(t, "heads", 8, source);
    c.text.layers = json_integer<int>(t.at("layers"), source + ": text_cfg.layers");
    c.text.mlp_ratio = get_or<double>(t, "mlp_ratio", 4.0, source);
    c.validate();
    return c;
  } catch (const json::exception& e) {
    throw invalid_argument(source + ": not a valid open_clip model config: " + without_quoted_input(e.what()));
  }
}

json ClipConfig::to_hf_json() const {
  const char* act = quick_gelu ? "quick_gelu" : "gelu";
  json j;
  j["architectures"] = {"CLIPModel"};
  j["model_type"] = "clip";
  j["projection_dim"] = embed_dim;
  j["logit_scale_init_value"] = 2.6592;
  j["text_config"] = {{"hidden_size", text.width},
                      {"intermediate_size", static_cast<int>(std::lround(text.width * text.mlp_ratio))},
                      {"num_attention_heads", text.heads},
                      {"num_hidden_layers", text.layers},
                      {"max_position_embeddings", text.context_length},
                      {"vocab_size", text.vocab_size},
                      {"hidden_act", act},
                      {"layer_norm_eps", layer_norm_eps},
                      {"bos_token_id", 49406},
                      {"eos_token_id", 49407},
                      {"pad_token_id", 1},
                      {"projection_dim", embed_dim}};
  j["vision_config"] = {{"hidden_size", vision.width},
                        {"intermediate_size", static_cast<int>(std::lround(vision.width * vision.mlp_ratio))},
                        {"num_attention_heads", vision.heads},
                        {"num_hidden_layers", vision.layers},
                        {"image_size", vision.image_size},
                        {"patch_size", vision.patch_size},
                        {"num_channels", 3},
                        {"hidden_act", act},
                        {"layer_norm_eps", layer_norm_eps},
                        {"projection_dim", embed_dim}};
  return j;
}

ClipConfig ClipConfig::from_hf_json(const json& j, const std::string& source) {
  try {
    // HF fills absent fields from CLIPTextConfig/CLIPVisionConfig defaults.
    const json& t = j.at("text_config");
    const json& v = j.at("vision_config");
    ClipConfig c;
    c.embed_dim = get_or<int>(j, "projection_dim", 512, source);
    c.text.width = get_or<int>(t, "hidden_size", 512, source);
    c.text.heads = get_or<int>(t, "num_attention_heads", 8, source);
    c.text.layers = get_or<int>(t, "num_hidden_layers", 12, source);
    c.text.context_length = get_or<int>(t, "max_position_embeddings", 77, source);
    c.text.vocab_size = get_or<int>(t, "vocab_size", 49408, source);
    c.text.mlp_ratio = static_cast<double>(get_or<int>(t, "intermediate_size", 2048, source)) / c.text.width;
    c.vision.width = get_or<int>(v, "hidden_size", 768, source);
    c.vision.heads = get_or<int>(v, "num_attention_heads", 12, source);
    c.vision.layers = get_or<int>(v, "num_hidden_layers", 12, source);
    c.vision.image_size = get_or<int>(v, "image_size", 224, source);
    c.vision.patch_size = get_or<int>(v, "patch_size", 32, source);
    c.vision.mlp_ratio = static_cast<double>(get_or<int>(v, "intermediate_size", 3072, source)) / c.vision.width;
    const std::string act_t = get_or<std::string>(t, "hidden_act", "quick_gelu", source);
    const std::string act_v = get_or<std::string>(v, "hidden_act", "quick_gelu", source);
    if (act_t != act_v) throw invalid_argument(source + ": text and vision hidden_act differ (" + act_t + " vs " + act_v + ")");
    if (act_t == "quick_gelu") {
      c.quick_gelu = true;
    } else if (act_t == "gelu") {
      c.quick_gelu = false;
    } else {
      throw invalid_argument(source + ": unsupported hidden_act '" + act_t + "' (quick_gelu or gelu)");
    }
    c.layer_norm_eps = get_or<double>(t, "layer_norm_eps", 1e-5, source);
    c.validate();
    return c;
  } catch (const json::exception& e) {
    throw invalid_argument(source + ": not a valid Hugging Face CLIP config: " + without_quoted_input(e.what()));
  }
}

ClipConfig ClipConfig::from_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw not_found(path + ": cannot open model config");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw invalid_argument(path + ": not valid JSON: " + without_quoted_input(e.what()));
  }
  if (j.contains("text_config") && j.contains("vision_config")) return from_hf_json(j, path);
  if (j.contains("vision_cfg") && j.contains("text_cfg")) {
    ClipConfig c = from_open_clip_json(j, path);
    if (c.name.empty()) {
      std::string base = path.substr(path.find_last_of('/') + 1);
      c.name = base.substr(0, base.rfind(".json"));
    }
    return c;
  }
  throw invalid_argument(path + ": neither an open_clip model config (vision_cfg/text_cfg) nor a Hugging Face "
                         "config.json (vision_config/text_config)");
}

void ClipConfig::validate() const {
  auto check = [](bool ok, const std::string& what) {
    if (!ok) throw invalid_argument("invalid CLIP config: " + what);
  };
  check(embed_dim > 0, "embed_dim must be positive");
  check(vision.width > 0 && vision.layers > 0 && vision.heads > 0, "vision width/layers/heads must be positive");
  check(vision.width % vision.heads == 0, "vision width " + std::to_string(vision.width) +
                                              " is not divisible by its " + std::to_string(vision.heads) + " heads");
  check(vision.patch_size > 0 && vision.image_size >= vision.patch_size && vision.image_size % vision.patch_size == 0,
        "vision image_size " + std::to_string(vision.image_size) + " is not a multiple of patch_size " +
            std::to_string(vision.patch_size));
  check(text.width > 0 && text.layers > 0 && text.heads > 0, "text width/layers/heads must be positive");
  check(text.width % text.heads == 0, "text width " + std::to_string(text.width) + " is not divisible by its " +
                                          std::to_string(text.heads) + " heads");
  check(text.context_length > 1 && text.vocab_size > 0, "text context_length/vocab_size must be positive");
  check(vision.mlp_ratio > 0 && text.mlp_ratio > 0, "mlp_ratio must be positive");
}

bool operator==(const ClipConfig& a, const ClipConfig& b) {
  return a.embed_dim == b.embed_dim && a.quick_gelu == b.quick_gelu && a.layer_norm_eps == b.layer_norm_eps &&
         a.vision.image_size == b.vision.image_size && a.vision.patch_size == b.vision.patch_size &&
         a.vision.width == b.vision.width && a.vision.layers == b.vision.layers && a.vision.heads == b.vision.heads &&
         std::abs(a.vision.mlp_ratio - b.vision.mlp_ratio) < 1e-9 && a.text.context_length == b.text.context_length &&
         a.text.vocab_size == b.text.vocab_size && a.text.width == b.text.width && a.text.layers == b.text.layers &&
         a.text.heads == b.text.heads && std::abs(a.text.mlp_ratio - b.text.mlp_ratio) < 1e-9;
}

namespace {
double transformer_flops(double tokens, double width, double layers, double mlp_ratio) {
  const double qkv = 2 * tokens * width * 3 * width;
  const double attention = 2 * 2 * tokens * tokens * width;  // scores and weighted sum
  const double out = 2 * tokens * width * width;
  const double mlp = 2 * 2 * tokens * width * width * mlp_ratio;
  return layers * (qkv + attention + out + mlp);
}
}  // namespace

double ClipConfig::image_flops() const {
  const double patches = static_cast<double>(vision_grid()) * vision_grid();
  const double patch_embed = 2 * patches * 3.0 * vision.patch_size * vision.patch_size * vision.width;
  return patch_embed + transformer_flops(patches + 1, vision.width, vision.layers, vision.mlp_ratio) +
         2.0 * vision.width * embed_dim;
}

double ClipConfig::text_flops(int tokens) const {
  return transformer_flops(tokens, text.width, text.layers, text.mlp_ratio) + 2.0 * text.width * embed_dim;
}

ClipConfig infer_clip_config(const ShapeMap& shapes, const std::string& source) {
  auto shape_of = [&](const std::string& key) -> const std::vector<int64_t>& {
    auto it = shapes.find(key);
    if (it == shapes.end()) throw invalid_argument(source + ": missing key '" + key + "' needed to infer the architecture");
    return it->second;
  };
  auto dim = [&](const std::string& key, size_t rank, size_t axis) {
    const auto& s = shape_of(key);
    if (s.size() != rank) {
      throw invalid_argument(source + ": key '" + key + "' has shape " + shape_text(s) + ", expected rank " +
                             std::to_string(rank));
    }
    // Bounded so that the products below (image size, FLOPs) stay in range.
    constexpr int64_t kMaxDim = int64_t{1} << 20;
    if (s[axis] < 1 || s[axis] > kMaxDim) {
      throw invalid_argument(source + ": key '" + key + "' has shape " + shape_text(s) + "; dimension " +
                             std::to_string(axis) + " must be from 1 to " + std::to_string(kMaxDim));
    }
    return static_cast<int>(s[axis]);
  };
  // "visual.transformer.resblocks.11.ln_1.weight" -> 11.
  auto block_index = [&](const std::string& key, size_t prefix_size) {
    const size_t end = key.find('.', prefix_size);
    const std::string digits = key.substr(prefix_size, end == std::string::npos ? std::string::npos : end - prefix_size);
    if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos) {
      throw invalid_argument(source + ": key '" + key + "' has no block number after '" + key.substr(0, prefix_size) +
                             "'");
    }
    return std::stoi(digits);
  };
  if (!shapes.count("visual.proj")) {
    if (shapes.count("visual.attnpool.c_proj.weight") || shapes.count("visual.layer1.0.conv1.weight")) {
      throw unimplemented(source + ": ResNet (modified ResNet) vision towers are not supported, only ViT");
    }
    shape_of("visual.proj");  // throws naming the key
  }
  // Count layers from key names, as the reference does.
  std::set<int> vision_blocks, text_blocks;
  const std::string vprefix = "visual.transformer.resblocks.", tprefix = "transformer.resblocks.";
  for (const auto& [key, s] : shapes) {
    if (key.rfind(vprefix, 0) == 0) vision_blocks.insert(block_index(key, vprefix.size()));
    if (key.rfind(tprefix, 0) == 0) text_blocks.insert(block_index(key, tprefix.size()));
  }
  ClipConfig c;
  c.vision.width = dim("visual.conv1.weight", 4, 0);
  c.vision.patch_size = dim("visual.conv1.weight", 4, 3);
  const int positions = dim("visual.positional_embedding", 2, 0);
  const int grid = static_cast<int>(std::lround(std::sqrt(static_cast<double>(positions - 1))));
  c.vision.image_size = grid * c.vision.patch_size;
  c.vision.layers = static_cast<int>(vision_blocks.size());
  c.vision.heads = std::max(1, c.vision.width / 64);
  c.vision.mlp_ratio = static_cast<double>(dim("visual.transformer.resblocks.0.mlp.c_fc.weight", 2, 0)) / c.vision.width;
  c.embed_dim = dim("text_projection", 2, 1);
  c.text.context_length = dim("positional_embedding", 2, 0);
  c.text.vocab_size = dim("token_embedding.weight", 2, 0);
  c.text.width = dim("ln_final.weight", 1, 0);
  c.text.heads = std::max(1, c.text.width / 64);
  c.text.layers = static_cast<int>(text_blocks.size());
  c.text.mlp_ratio = static_cast<double>(dim("transformer.resblocks.0.mlp.c_fc.weight", 2, 0)) / c.text.width;
  c.quick_gelu = true;
  c.validate();
  return c;
}

std::vector<std::string> builtin_architectures() {
  std::vector<std::string> names;
  const std::string dir = assets_dir() + "/archs";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string f = e->d_name;
      if (f.size() > 5 && f.substr(f.size() - 5) == ".json") names.push_back(f.substr(0, f.size() - 5));
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

ClipConfig builtin_architecture(const std::string& name) {
  const auto names = builtin_architectures();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw not_found("unknown architecture '" + name + "' (known: " + list + ")");
  }
  ClipConfig c = ClipConfig::from_json_file(assets_dir() + "/archs/" + name + ".json");
  c.name = name;
  return c;
}

}  // namespace refinery
