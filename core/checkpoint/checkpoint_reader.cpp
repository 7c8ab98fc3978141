#include "core/checkpoint/checkpoint_reader.h"

#include <sys/stat.h>
#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/base/error.h"
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

std::string read_bytes(const std::string& path, size_t limit = SIZE_MAX) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw not_found(path + ": cannot open");
  std::string out;
  if (limit == SIZE_MAX) {
    std::ostringstream s;
    s << in.rdbuf();
    out = s.str();
  } else {
    out.resize(limit);
    in.read(&out[0], static_cast<std::streamsize>(limit));
    out.resize(static_cast<size_t>(in.gcount()));
  }
  return out;
}

std::string read_tail(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const auto size = static_cast<size_t>(in.tellg());
  const size_t n = std::min(size, limit);
  in.seekg(static_cast<std::streamoff>(size - n));
  std::string out(n, '\0');
  in.read(&out[0], static_cast<std::streamsize>(n));
  return out;
}

std::string shape_text(at::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::kF64: return at::kDouble;
    case DType::kF32: return at::kFloat;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kI64: return at::kLong;
    case DType::kI32: return at::kInt;
    case DType::kI16: return at::kShort;
    case DType::kI8: return at::kChar;
    case DType::kU8: return at::kByte;
    case DType::kBool: return at::kBool;
  }
  return at::kFloat;
}

// Checkpoints hold fp16/bf16 too; we always compute in fp32.
at::Tensor to_fp32(const at::Tensor& t) {
  if (t.is_floating_point()) return t.to(at::kFloat).contiguous();
  return t.contiguous();
}

// Keys some checkpoints carry that are not weights.
bool ignorable_key(const std::string& key) {
  static const std::set<std::string> kIgnored = {"input_resolution", "context_length", "vocab_size"};
  if (kIgnored.count(key)) return true;
  return key.size() >= 12 && key.compare(key.size() - 12, 12, "position_ids") == 0;
}

std::string strip_wrappers(std::string key) {
  // DataParallel/DDP and torch.compile wrap module names.
  for (const char* prefix : {"module.", "_orig_mod."}) {
    const std::string p = prefix;
    while (key.rfind(p, 0) == 0) key = key.substr(p.size());
  }
  return key;
}

void insert_tensor(StateDict& state, const std::string& raw_key, const at::Tensor& t, const std::string& source) {
  const std::string key = strip_wrappers(raw_key);
  if (ignorable_key(key)) return;
  if (!state.emplace(key, to_fp32(t)).second) throw invalid_argument(source + ": duplicate key '" + key + "'");
}

StateDict read_safetensors_tensors(const SafetensorsFile& file, bool shapes_only = false) {
  StateDict state;
  for (const auto& name : file.names()) {
    const TensorView& v = file.at(name);
    if (shapes_only) {  // meta tensors: shapes without data
      insert_tensor(state, name, torch::empty(v.shape, torch::TensorOptions().dtype(torch::kFloat).device(torch::kMeta)),
                    file.path());
      continue;
    }
    // from_blob over the mapping, then an owning fp32 copy.
    auto view = torch::from_blob(const_cast<uint8_t*>(v.data), v.shape,
                                 torch::TensorOptions().dtype(to_scalar_type(v.dtype)));
    at::Tensor owned = view.is_floating_point() ? view.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true)
                                                : view.clone();
    insert_tensor(state, name, owned, file.path());
  }
  return state;
}

void collect_from_ivalue_dict(const c10::impl::GenericDict& dict, StateDict& state, const std::string& source) {
  for (const auto& entry : dict) {
    if (!entry.key().isString()) continue;
    if (entry.value().isTensor()) insert_tensor(state, entry.key().toStringRef(), entry.value().toTensor(), source);
  }
}

StateDict read_torch_state_dict(const std::string& path) {
  const std::string bytes = read_bytes(path);
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const c10::Error& e) {
    throw invalid_argument(path + ": cannot read as a torch.save checkpoint: " + e.what_without_backtrace());
  }
  if (!value.isGenericDict()) throw invalid_argument(path + ": torch.save file does not hold a dict of tensors");
  auto dict = value.toGenericDict();
  // open_clip training checkpoints: {"epoch", "name", "state_dict", "optimizer", ...}
  for (const auto& entry : dict) {
    if (entry.key().isString() && entry.key().toStringRef() == "state_dict" && entry.value().isGenericDict()) {
      dict = entry.value().toGenericDict();
      break;
    }
  }
  StateDict state;
  collect_from_ivalue_dict(dict, state, path);
  if (state.empty()) throw invalid_argument(path + ": torch.save file holds no tensors");
  return state;
}

StateDict read_torchscript(const std::string& path) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw invalid_argument(path + ": cannot read as a TorchScript archive: " + e.what_without_backtrace());
  }
  StateDict state;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) insert_tensor(state, p.name, p.value.detach(), path);
  for (const auto& b : module.named_buffers(/*recurse=*/true)) insert_tensor(state, b.name, b.value.detach(), path);
  return state;
}

StateDict read_hf_folder(const std::string& dir, std::map<std::string, std::string>& metadata, bool shapes_only) {
  StateDict hf;
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string bin = dir + "/pytorch_model.bin";
  if (file_exists(single)) {
    auto file = SafetensorsFile::open(single);
    metadata = file.metadata();
    hf = read_safetensors_tensors(file, shapes_only);
  } else if (file_exists(index)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_bytes(index));
    } catch (const nlohmann::json::exception& e) {
      throw invalid_argument(index + ": not valid JSON: " + without_quoted_input(e.what()));
    }
    std::set<std::string> shards;
    for (const auto& [k, v] : j.at("weight_map").items()) shards.insert(v.get<std::string>());
    for (const auto& shard : shards) {
      for (auto& [k, v] : read_safetensors_tensors(SafetensorsFile::open(dir + "/" + shard), shapes_only)) {
        if (!hf.emplace(k, v).second) throw invalid_argument(dir + "/" + shard + ": duplicate key '" + k + "'");
      }
    }
  } else if (file_exists(bin)) {
    hf = read_torch_state_dict(bin);
  } else {
    throw invalid_argument(dir + ": a Hugging Face folder needs model.safetensors, model.safetensors.index.json "
                                 "or pytorch_model.bin");
  }
  return hf_to_open_clip(hf, dir);
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

CheckpointFormat CheckpointReader::detect_format(const std::string& path) {
  if (is_directory(path)) {
    if (!file_exists(path + "/config.json")) {
      throw invalid_argument(path + ": a folder checkpoint must be a Hugging Face CLIPModel folder with config.json");
    }
    return CheckpointFormat::kHuggingFace;
  }
  if (!file_exists(path)) throw not_found(path + ": no such checkpoint file or folder");
  const std::string head = read_bytes(path, 4096);
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

Checkpoint CheckpointReader::read(const std::string& path, const CheckpointReadOptions& options) {
  return read_impl(path, options, /*shapes_only=*/false);
}

Checkpoint CheckpointReader::read_header(const std::string& path, const CheckpointReadOptions& options) {
  Checkpoint ck = read_impl(path, options, /*shapes_only=*/true);
  ck.state.clear();
  return ck;
}

Checkpoint CheckpointReader::read_impl(const std::string& path, const CheckpointReadOptions& options,
                                       bool shapes_only) {
  Checkpoint ck;
  ck.path = path;
  ck.format = detect_format(path);
  std::optional<ClipConfig> declared;
  switch (ck.format) {
    case CheckpointFormat::kTorchScript:
      ck.state = read_torchscript(path);
      break;
    case CheckpointFormat::kTorchStateDict:
      ck.state = read_torch_state_dict(path);
      break;
    case CheckpointFormat::kSafetensors: {
      auto file = SafetensorsFile::open(path);
      ck.metadata = file.metadata();
      ck.state = read_safetensors_tensors(file, shapes_only);
      if (looks_like_hf_state_dict(ck.state)) ck.state = hf_to_open_clip(ck.state, path);
      auto it = ck.metadata.find("refinery.architecture");
      if (it != ck.metadata.end()) {
        try {
          declared = ClipConfig::from_open_clip_json(nlohmann::json::parse(it->second), path + " metadata");
          ck.config_source = "checkpoint metadata";
        } catch (const nlohmann::json::exception& e) {
          throw invalid_argument(path + ": metadata 'refinery.architecture' is not valid JSON: " + without_quoted_input(e.what()));
        }
      }
      break;
    }
    case CheckpointFormat::kHuggingFace:
      ck.state = read_hf_folder(path, ck.metadata, shapes_only);
      declared = ClipConfig::from_json_file(path + "/config.json");
      ck.config_source = "config.json";
      break;
  }
  if (!options.model_config_path.empty()) {
    declared = ClipConfig::from_json_file(options.model_config_path);
    ck.config_source = options.model_config_path;
  }
  // Weights decide what they can; a declared config adds what they cannot
  // (activation, layer-norm eps, name) and must agree with them.
  const ClipConfig inferred = infer_clip_config(shapes_of(ck.state), path);
  if (declared) {
    ClipConfig merged = *declared;
    const ClipConfig& d = *declared;
    const bool same_shapes = d.embed_dim == inferred.embed_dim && d.vision.width == inferred.vision.width &&
                             d.vision.layers == inferred.vision.layers &&
                             d.vision.patch_size == inferred.vision.patch_size &&
                             d.vision.image_size == inferred.vision.image_size && d.text.width == inferred.text.width &&
                             d.text.layers == inferred.text.layers &&
                             d.text.context_length == inferred.text.context_length &&
                             d.text.vocab_size == inferred.text.vocab_size;
    if (!same_shapes) {
      throw invalid_argument(ck.config_source + ": declared architecture " + d.to_open_clip_json().dump() +
                             " does not match the weights in " + path + ", which imply " +
                             inferred.to_open_clip_json().dump());
    }
    ck.config = merged;
  } else {
    ck.config = inferred;
    ck.config_source = "inferred from weights";
  }
  return ck;
}

void load_state_dict_strict(ClipModel& model, const StateDict& state, const std::string& source) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> missing, unexpected;
  std::set<std::string> seen;
  auto copy_into = [&](const std::string& name, at::Tensor& target) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      return;
    }
    seen.insert(name);
    if (!it->second.sizes().equals(target.sizes())) {
      throw invalid_argument(source + ": key '" + name + "' has shape " + shape_text(it->second.sizes()) +
                             ", the architecture needs " + shape_text(target.sizes()));
    }
    target.copy_(it->second);
  };
  for (auto& p : model->named_parameters(/*recurse=*/true)) copy_into(p.key(), p.value());
  for (auto& b : model->named_buffers(/*recurse=*/true)) copy_into(b.key(), b.value());
  for (const auto& [k, v] : state) {
    if (!seen.count(k)) unexpected.push_back(k);
  }
  auto list = [](const std::vector<std::string>& keys) {
    std::string s;
    for (size_t i = 0; i < keys.size() && i < 8; ++i) s += (i ? ", '" : "'") + keys[i] + "'";
    if (keys.size() > 8) s += " and " + std::to_string(keys.size() - 8) + " more";
    return s;
  };
  if (!missing.empty()) throw invalid_argument(source + ": missing key(s) " + list(missing));
  if (!unexpected.empty()) throw invalid_argument(source + ": unexpected key(s) " + list(unexpected));
}

ClipModel CheckpointReader::load_model(const std::string& path, const CheckpointReadOptions& options,
                                       Checkpoint* info) {
  Checkpoint ck = read(path, options);
  ClipModel model(ck.config);
  load_state_dict_strict(model, ck.state, path);
  model->eval();
  if (info != nullptr) {
    ck.state.clear();  // the model owns the weights now
    *info = std::move(ck);
  }
  return model;
}

StateDict model_state_dict(ClipModel& model) {
  StateDict state;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) state[p.key()] = p.value();
  for (const auto& b : model->named_buffers(/*recurse=*/true)) state[b.key()] = b.value();
  return state;
}

}  // namespace refinery
