// The architecture of a CLIP model, as plain data. Filled from a built-in
// architecture file (open_clip's model-config JSON), a Hugging Face
// config.json, a checkpoint's own metadata, or inferred from the weights the
// way the reference `build_model` does.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace refinery {

struct VisionConfig {
  int image_size = 224;
  int patch_size = 32;
  int width = 768;
  int layers = 12;
  int heads = 12;
  double mlp_ratio = 4.0;
};

struct TextConfig {
  int context_length = 77;
  int vocab_size = 49408;
  int width = 512;
  int layers = 12;
  int heads = 8;
  double mlp_ratio = 4.0;
};

struct ClipConfig {
  std::string name;      // architecture name, e.g. "ViT-B-32" (informational)
  int embed_dim = 512;
  VisionConfig vision;
  TextConfig text;
  bool quick_gelu = true;  // OpenAI weights use QuickGELU; open_clip's own configs often GELU
  double layer_norm_eps = 1e-5;

  // open_clip model-config JSON ({"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}).
  nlohmann::json to_open_clip_json() const;
  static ClipConfig from_open_clip_json(const nlohmann::json& j, const std::string& source);
  // Hugging Face CLIPModel config.json.
  nlohmann::json to_hf_json() const;
  static ClipConfig from_hf_json(const nlohmann::json& j, const std::string& source);
  // Either of the two above, told apart by their keys.
  static ClipConfig from_json_file(const std::string& path);

  int vision_grid() const { return vision.image_size / vision.patch_size; }
  // Forward-pass FLOPs (multiply-add = 2) of one image, and of one text run
  // over `tokens` positions: the matmuls and attention, which dominate.
  double image_flops() const;
  double text_flops(int tokens) const;
  void validate() const;  // throws invalid_argument naming the bad field
};

bool operator==(const ClipConfig& a, const ClipConfig& b);

// Shapes of the weights, by open_clip key name; enough to infer a config.
using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// The reference `build_model` inference: widths from LayerNorms and conv1,
// layer counts from key names, heads = width / 64, resolution from the
// positional embedding. Throws naming the key it needed and did not find.
ClipConfig infer_clip_config(const ShapeMap& shapes, const std::string& source);

// Built-in architectures shipped in assets/archs (open_clip JSON files).
std::vector<std::string> builtin_architectures();
ClipConfig builtin_architecture(const std::string& name);  // NOT_FOUND lists the known names

}  // namespace refinery
