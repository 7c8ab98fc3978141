// What a checkpoint is, read without its weights and without LibTorch: the
// form (sniffed from the path and the file's first bytes), the architecture
// (declared in metadata or config.json, else inferred from the shapes) and
// the shapes under open_clip names. Safetensors files and Hugging Face
// folders of safetensors are read from their headers alone; this is what
// `models import` and the registry run on client-named files before any
// weight is touched. TorchScript and torch.save files need LibTorch to be
// read at all (checkpoint_reader.h).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/model/clip_config.h"

namespace refinery {

enum class CheckpointFormat { kTorchScript, kTorchStateDict, kSafetensors, kHuggingFace };
const char* checkpoint_format_name(CheckpointFormat format);

// A folder is a Hugging Face folder (it needs config.json); a file is told
// apart by its magic: a zip (TorchScript when it holds code/ or
// constants.pkl, else torch.save) or a safetensors header. NOT_FOUND for a
// missing path, INVALID_ARGUMENT naming the path for anything else.
CheckpointFormat detect_checkpoint_format(const std::string& path);

struct CheckpointReadOptions {
  // An open_clip model-config JSON or HF config.json that overrides what the
  // checkpoint says or implies (e.g. GELU for an open_clip model).
  std::string model_config_path;
};

struct CheckpointHeader {
  std::string path;
  CheckpointFormat format = CheckpointFormat::kSafetensors;
  ClipConfig config;
  std::string config_source;                    // where `config` came from, for `info`
  std::map<std::string, std::string> metadata;  // safetensors metadata, if any
  ShapeMap shapes;                              // open_clip names
};

// The header of a safetensors file or of a Hugging Face folder holding
// safetensors weights (one file, or shards listed by
// model.safetensors.index.json, each a plain file name inside the folder);
// nullopt for the forms that must be read whole. Errors name the file and
// the offending key; none quotes file contents.
std::optional<CheckpointHeader> read_checkpoint_header(const std::string& path,
                                                       const CheckpointReadOptions& options = {});

// Shared with the full reader (checkpoint_reader.cpp):
// the name a stored tensor goes by: DataParallel/torch.compile wrappers
// ("module.", "_orig_mod.") stripped; nullopt for entries that are not
// weights (position_ids, input_resolution, context_length, vocab_size);
std::optional<std::string> checkpoint_tensor_name(const std::string& stored_key);
// the safetensors files of a Hugging Face folder: model.safetensors, or the
// shards model.safetensors.index.json lists (each a plain file name inside
// the folder, else INVALID_ARGUMENT); empty when the folder has only
// pytorch_model.bin; INVALID_ARGUMENT when it has none of the three;
std::vector<std::string> hf_safetensors_files(const std::string& folder);
// the architecture a safetensors file's "refinery.architecture" metadata
// declares, if any;
std::optional<ClipConfig> declared_architecture(const std::map<std::string, std::string>& metadata,
                                                const std::string& path);
// sets header.config and config_source from `declared` (from
// `declared_source`), options.model_config_path and header.shapes: weights
// decide what they can, a declared config adds what they cannot (activation,
// layer-norm eps, name) and must agree with them.
void settle_checkpoint_config(CheckpointHeader& header, std::optional<ClipConfig> declared,
                              const std::string& declared_source, const CheckpointReadOptions& options);

}  // namespace refinery
