// Reads a CLIP checkpoint in any of the forms users hold: an OpenAI
// TorchScript archive, a torch.save state dict (open_clip training
// checkpoints too), a .safetensors file (OpenAI/open_clip or HF names) or a
// Hugging Face CLIPModel folder. Every form ends as an fp32 ClipModel.
#pragma once

#include <map>
#include <string>

#include "core/checkpoint/checkpoint_header.h"
#include "core/checkpoint/state_dict.h"
#include "core/model/clip_config.h"
#include "core/model/clip_model.h"

namespace refinery {

// A checkpoint read whole: its header (format, architecture, metadata,
// shapes; checkpoint_header.h) and its tensors.
struct Checkpoint : CheckpointHeader {
  StateDict state;  // open_clip names, float32, CPU
};

class CheckpointReader {
 public:
  // Sniffs the format from the path (a folder is HF) and the file's magic.
  static CheckpointFormat detect_format(const std::string& path) { return detect_checkpoint_format(path); }
  // Reads tensors and architecture; throws refinery::Error naming the file
  // and the offending key.
  static Checkpoint read(const std::string& path, const CheckpointReadOptions& options = {});
  // Format and architecture only (state left empty). Safetensors files and
  // HF folders are read from their headers (read_checkpoint_header); other
  // formats are read whole.
  static Checkpoint read_header(const std::string& path, const CheckpointReadOptions& options = {});
  // read() + a model built from the config with every weight loaded strictly.
  static ClipModel load_model(const std::string& path, const CheckpointReadOptions& options = {},
                              Checkpoint* info = nullptr);

 private:
  // views: safetensors tensors may stay views of the file (load_model).
  static Checkpoint read_impl(const std::string& path, const CheckpointReadOptions& options, bool shapes_only,
                              bool views);
};

// Copies `state` into `model`, strictly: a missing key, an unexpected key or
// a shape mismatch is an error naming the key(s). With `adopt`, the model
// takes the state's fp32 CPU tensors as they are instead of copying them
// (load_model: views of the checkpoint's mapping, so the weights are the
// file's pages, shared with the page cache, copied only where written).
void load_state_dict_strict(ClipModel& model, const StateDict& state, const std::string& source, bool adopt = false);

// The model's tensors by open_clip name.
StateDict model_state_dict(ClipModel& model);

}  // namespace refinery
