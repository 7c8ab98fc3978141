// A checkpoint's tensors by open_clip key name. Ordered, so written files
// and error messages are deterministic.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "core/model/clip_config.h"

namespace refinery {

using StateDict = std::map<std::string, at::Tensor>;

ShapeMap shapes_of(const StateDict& state);

// Hugging Face CLIPModel names <-> open_clip/OpenAI names. HF splits the
// attention input projection into q/k/v and stores the two projections
// transposed (as nn.Linear weights).
bool looks_like_hf_state_dict(const StateDict& state);
StateDict hf_to_open_clip(const StateDict& hf, const std::string& source);
StateDict open_clip_to_hf(const StateDict& open_clip);

}  // namespace refinery
