#include <torch/torch.h>

#include <array>

#include "core/base/error.h"
#include "core/checkpoint/hf_clip_names.h"
#include "core/checkpoint/state_dict.h"

namespace refinery {

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
  // The shapes first: every name known, projections 2-D, q/k/v complete and
  // alike, so the transposes and concatenations below cannot fail.
  hf_clip_shapes_to_open_clip(shapes_of(hf), source);
  StateDict out;
  std::map<std::string, std::array<at::Tensor, 3>> qkv;  // open_clip key -> q, k, v (weight or bias)
  for (const auto& [key, value] : hf) {
    const auto mapping = map_hf_clip_name(key, source);
    if (!mapping) continue;
    switch (mapping->kind) {
      case HfNameMapping::Kind::kCopy: out[mapping->open_clip_key] = value; break;
      case HfNameMapping::Kind::kTranspose: out[mapping->open_clip_key] = value.t().contiguous(); break;
      case HfNameMapping::Kind::kQkv: qkv[mapping->open_clip_key][mapping->qkv_slot] = value; break;
    }
  }
  for (auto& [key, parts] : qkv) out[key] = torch::cat({parts[0], parts[1], parts[2]}, 0);
  return out;
}

StateDict open_clip_to_hf(const StateDict& oc) {
  StateDict out;
  for (const auto& [key, value] : oc) {
    const OpenClipToHf names = hf_clip_names_for(key);
    switch (names.kind) {
      case HfNameMapping::Kind::kCopy: out[names.hf_keys[0]] = value; break;
      case HfNameMapping::Kind::kTranspose: out[names.hf_keys[0]] = value.t().contiguous(); break;
      case HfNameMapping::Kind::kQkv: {
        auto parts = value.chunk(3, 0);
        for (int i = 0; i < 3; ++i) out[names.hf_keys[i]] = parts[i].contiguous();
        break;
      }
    }
  }
  return out;
}

}  // namespace refinery
