// Reads a CLIP checkpoint in any of the forms users hold: an OpenAI
// TorchScript archive, a torch.save state dict (open_clip training
// checkpoints too), a .safetensors file (OpenAI/open_clip or HF names) or a
// Hugging Face CLIPModel folder. Every form ends as an fp32 ClipModel.
#pragma once

#include <map>
#include <string>

#include "core/checkpoint/state_dict.h"
#include "core/model/clip_config.h"
#include "core/model/clip_model.h"

namespace refinery {

enum class CheckpointFormat { kTorchScript, kTorchStateDict, kSafetensors, kHuggingFace };
const char* checkpoint_format_name(CheckpointFormat format);

struct CheckpointReadOptions {
  // An open_clip model-config JSON or HF config.json that overrides what the
  // checkpoint says or implies (e.g. GELU for an open_clip model).
  std::string model_config_path;
};

struct Checkpoint {
  std::string path;
  CheckpointFormat format = CheckpointFormat::kSafetensors;
  ClipConfig config;
  std::string config_source;  // where `config` came from, for `info`
  std::map<std::string, std::string> metadata;  // safetensors metadata, if any
  StateDict state;            // open_clip names, float32, CPU
};

class CheckpointReader {
 public:
  // Sniffs the format from the path (a folder is HF) and the file's magic.
  static CheckpointFormat detect_format(const std::string& path);
  // Reads tensors and architecture; throws refinery::Error naming the file
  // and the offending key.
  static Checkpoint read(const std::string& path, const CheckpointReadOptions& options = {});
  // Format and architecture only. Cheap for safetensors and HF folders (the
  // header's shapes are enough); other formats are read whole.
  static Checkpoint read_header(const std::string& path, const CheckpointReadOptions& options = {});
  // read() + a model built from the config with every weight loaded strictly.
  static ClipModel load_model(const std::string& path, const CheckpointReadOptions& options = {},
                              Checkpoint* info = nullptr);

 private:
  static Checkpoint read_impl(const std::string& path, const CheckpointReadOptions& options, bool shapes_only);
};

// Copies `state` into `model`, strictly: a missing key, an unexpected key or
// a shape mismatch is an error naming the key(s).
void load_state_dict_strict(ClipModel& model, const StateDict& state, const std::string& source);

// The model's tensors by open_clip name.
StateDict model_state_dict(ClipModel& model);

}  // namespace refinery
