// Writes a ClipModel as .safetensors (open_clip key names, architecture in
// the metadata) or as a Hugging Face CLIPModel folder. Writes are atomic: a
// failed write never replaces a good file.
#pragma once

#include <map>
#include <string>

#include "core/model/clip_model.h"

namespace refinery {

enum class WeightPrecision { kFloat32, kFloat16 };
WeightPrecision parse_weight_precision(const std::string& name);  // "fp32" | "fp16"

struct CheckpointWriteOptions {
  WeightPrecision precision = WeightPrecision::kFloat32;
  std::map<std::string, std::string> metadata;  // extra safetensors metadata (lineage, ...)
};

class CheckpointWriter {
 public:
  static void write_safetensors(ClipModel& model, const std::string& path, const CheckpointWriteOptions& options = {});
  // `dir` must not exist yet, or be empty: a folder is written beside it and
  // renamed into place.
  static void write_hf_folder(ClipModel& model, const std::string& dir, const CheckpointWriteOptions& options = {});
};

}  // namespace refinery
