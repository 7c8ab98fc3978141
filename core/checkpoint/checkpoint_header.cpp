#include "core/checkpoint/checkpoint_header.h"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/base/error.h"
#include "core/checkpoint/hf_clip_names.h"
#include "core/safetensors/safetensors.h"

namespace refinery {
namespace {

bool is_directory(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_head(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw not_found(path + ": cannot open");
  std::string out(limit, '\0');
  in.read(&out[0], static_cast<std::streamsize>(limit));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

std::string read_tail(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const std::streamoff end = in ? static_cast<std::streamoff>(in.tellg()) : -1;
  if (end < 0) throw not_found(path + ": cannot open");
  const auto n = static_cast<std::streamoff>(std::min<size_t>(static_cast<size_t>(end), limit));
  in.seekg(end - n);
  std::string out(static_cast<size_t>(n), '\0');
  in.read(&out[0], n);
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

// Shapes under their checkpoint names, as the full reader stores tensors.
void add_shapes(const SafetensorsFile& file, ShapeMap& shapes) {
  for (const auto& stored : file.names()) {
    const auto name = checkpoint_tensor_name(stored);
    if (!name) continue;
    if (!shapes.emplace(*name, file.at(stored).shape).second) {
      throw invalid_argument(file.path() + ": duplicate key '" + *name + "'");
    }
  }
}

// The shard files model.safetensors.index.json lists: plain names inside
// the folder, so an index cannot point outside it.
std::set<std::string> shard_names(const std::string& index_path) {
  nlohmann::json j;
  try {
    std::ifstream in(index_path, std::ios::binary);
    if (!in) throw not_found(index_path + ": cannot open");
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(index_path + ": not valid JSON: " + without_quoted_input(e.what()));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    throw invalid_argument(index_path + ": needs an object \"weight_map\" (tensor name -> shard file)");
  }
  std::set<std::string> shards;
  for (const auto& [key, value] : j["weight_map"].items()) {
    if (!value.is_string()) throw invalid_argument(index_path + ": weight_map[\"" + key + "\"] is not a file name");
    const std::string shard = value.get<std::string>();
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\0') != std::string::npos) {
      throw invalid_argument(index_path + ": weight_map[\"" + key + "\"] must name a file in the folder, got \"" +
                             shard + "\"");
    }
    shards.insert(shard);
  }
  if (shards.empty()) throw invalid_argument(index_path + ": weight_map lists no shard");
  return shards;
}

}  // namespace

const char* checkpoint_format_name(CheckpointFormat format) {
  switch (format) {
    case CheckpointFormat::kTorchScript: return "torchscript";
    case CheckpointFormat::kTorchStateDict: return "torch-state-dict";
    case CheckpointFormat::kSafetensors: return "safetensors";
    case CheckpointFormat::kHuggingFace: return "huggingface";
  }
  return "?";
}

CheckpointFormat detect_checkpoint_format(const std::string& path) {
  if (is_directory(path)) {
    if (!file_exists(path + "/config.json")) {
      throw invalid_argument(path + ": a folder checkpoint must be a Hugging Face CLIPModel folder with config.json");
    }
    return CheckpointFormat::kHuggingFace;
  }
  if (!file_exists(path)) throw not_found(path + ": no such checkpoint file or folder");
  const std::string head = read_head(path, 16);
  if (head.size() >= 4 && head.compare(0, 4, "PK\x03\x04") == 0) {
    // Both torch.save and TorchScript use a zip; only TorchScript has code/.
    // The zip's central directory (at the end) lists every member's name.
    const std::string tail = read_tail(path, 1 << 20);
    return tail.find("/code/") != std::string::npos || tail.find("/constants.pkl") != std::string::npos
               ? CheckpointFormat::kTorchScript
               : CheckpointFormat::kTorchStateDict;
  }
  if (head.size() >= 9 && head[8] == '{') return CheckpointFormat::kSafetensors;
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x80) {
    throw invalid_argument(path + ": a legacy (pre-1.6, non-zip) torch.save file; re-save it with a newer torch or "
                                  "convert it to .safetensors");
  }
  throw invalid_argument(path + ": not a recognised checkpoint (TorchScript, torch.save zip, safetensors or a "
                                "Hugging Face folder)");
}

std::optional<ClipConfig> declared_architecture(const std::map<std::string, std::string>& metadata,
                                                const std::string& path) {
  const auto it = metadata.find("refinery.architecture");
  if (it == metadata.end()) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(path + ": metadata 'refinery.architecture' is not valid JSON: " +
                           without_quoted_input(e.what()));
  }
  return ClipConfig::from_open_clip_json(j, path + " metadata");
}

void settle_checkpoint_config(CheckpointHeader& h, std::optional<ClipConfig> declared,
                              const std::string& declared_source, const CheckpointReadOptions& options) {
  std::string source = declared_source;
  if (!options.model_config_path.empty()) {
    declared = ClipConfig::from_json_file(options.model_config_path);
    source = options.model_config_path;
  }
  const ClipConfig inferred = infer_clip_config(h.shapes, h.path);
  if (!declared) {
    h.config = inferred;
    h.config_source = "inferred from weights";
    return;
  }
  const ClipConfig& d = *declared;
  const bool same_shapes = d.embed_dim == inferred.embed_dim && d.vision.width == inferred.vision.width &&
                           d.vision.layers == inferred.vision.layers &&
                           d.vision.patch_size == inferred.vision.patch_size &&
                           d.vision.image_size == inferred.vision.image_size && d.text.width == inferred.text.width &&
                           d.text.layers == inferred.text.layers &&
                           d.text.context_length == inferred.text.context_length &&
                           d.text.vocab_size == inferred.text.vocab_size;
  if (!same_shapes) {
    throw invalid_argument(source + ": declared architecture " + d.to_open_clip_json().dump() +
                           " does not match the weights in " + h.path + ", which imply " +
                           inferred.to_open_clip_json().dump());
  }
  h.config = d;
  h.config_source = source;
}

std::optional<std::string> checkpoint_tensor_name(const std::string& stored_key) {
  std::string key = stored_key;
  for (const std::string prefix : {"module.", "_orig_mod."}) {
    while (key.rfind(prefix, 0) == 0) key = key.substr(prefix.size());
  }
  static const std::set<std::string> kNotWeights = {"input_resolution", "context_length", "vocab_size"};
  const std::string ids = "position_ids";
  if (kNotWeights.count(key) ||
      (key.size() >= ids.size() && key.compare(key.size() - ids.size(), ids.size(), ids) == 0)) {
    return std::nullopt;
  }
  return key;
}

std::vector<std::string> hf_safetensors_files(const std::string& folder) {
  const std::string single = folder + "/model.safetensors";
  const std::string index = folder + "/model.safetensors.index.json";
  if (file_exists(single)) return {single};
  if (file_exists(index)) {
    std::vector<std::string> files;
    for (const auto& shard : shard_names(index)) files.push_back(folder + "/" + shard);
    return files;
  }
  if (file_exists(folder + "/pytorch_model.bin")) return {};
  throw invalid_argument(folder + ": a Hugging Face folder needs model.safetensors, model.safetensors.index.json "
                                  "or pytorch_model.bin");
}

std::optional<CheckpointHeader> read_checkpoint_header(const std::string& path, const CheckpointReadOptions& options) {
  CheckpointHeader h;
  h.path = path;
  h.format = detect_checkpoint_format(path);
  std::optional<ClipConfig> declared;
  std::string declared_source;
  ShapeMap shapes;
  bool hf_names = false;
  if (h.format == CheckpointFormat::kSafetensors) {
    const SafetensorsFile file = SafetensorsFile::open(path);
    h.metadata = file.metadata();
    add_shapes(file, shapes);
    hf_names = looks_like_hf_clip_names(shapes);
    declared = declared_architecture(h.metadata, path);
    declared_source = "checkpoint metadata";
  } else if (h.format == CheckpointFormat::kHuggingFace) {
    const std::vector<std::string> files = hf_safetensors_files(path);
    if (files.empty()) return std::nullopt;  // pytorch_model.bin: read whole
    for (const auto& file_path : files) {
      const SafetensorsFile file = SafetensorsFile::open(file_path);
      if (files.size() == 1) h.metadata = file.metadata();
      add_shapes(file, shapes);
    }
    hf_names = true;
    declared = ClipConfig::from_json_file(path + "/config.json");
    declared_source = "config.json";
  } else {
    return std::nullopt;
  }
  h.shapes = hf_names ? hf_clip_shapes_to_open_clip(shapes, path) : std::move(shapes);
  settle_checkpoint_config(h, std::move(declared), declared_source, options);
  return h;
}

}  // namespace refinery
