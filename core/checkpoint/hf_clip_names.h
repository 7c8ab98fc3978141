// Hugging Face CLIPModel tensor names -> open_clip/OpenAI names, as a plan
// that needs no tensors: which open_clip key a weight becomes, and whether it
// is copied, transposed (the two projections, stored as nn.Linear weights) or
// one third of an attention input projection (HF splits it into q/k/v).
// hf_clip_mapping.cpp applies the plan to tensors; checkpoint headers apply
// it to shapes, with the same checks, so neither needs the other's inputs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/model/clip_config.h"

namespace refinery {

struct HfNameMapping {
  enum class Kind { kCopy, kTranspose, kQkv };
  std::string open_clip_key;
  Kind kind = Kind::kCopy;
  int qkv_slot = 0;  // kQkv: 0 q, 1 k, 2 v, concatenated in that order along dim 0
};

// nullopt for a buffer HF keeps and open_clip does not (position_ids);
// INVALID_ARGUMENT naming `source` and the key for a name CLIPModel never has.
std::optional<HfNameMapping> map_hf_clip_name(const std::string& hf_key, const std::string& source);

// The reverse, for writing HF folders: the HF key of an open_clip key, or
// for an attention input projection the three (q, k, v) it splits into
// along dim 0. INTERNAL for a key ClipModel does not have.
struct OpenClipToHf {
  std::vector<std::string> hf_keys;
  HfNameMapping::Kind kind = HfNameMapping::Kind::kCopy;
};
OpenClipToHf hf_clip_names_for(const std::string& open_clip_key);

// True when the names are Hugging Face CLIPModel's (either tower's embeddings).
bool looks_like_hf_clip_names(const ShapeMap& shapes);

// The open_clip shapes the tensors will have after mapping. Checks what the
// mapping relies on, each as INVALID_ARGUMENT naming the key: projections
// 2-D, a block's q, k and v all present, of one shape, with at least one
// dimension, and a first dimension that can be tripled.
ShapeMap hf_clip_shapes_to_open_clip(const ShapeMap& hf, const std::string& source);

}  // namespace refinery
