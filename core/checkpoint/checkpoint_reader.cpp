#include "core/checkpoint/checkpoint_reader.h"

#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstdint>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "core/base/error.h"
#include "core/safetensors/safetensors.h"

namespace refinery {
namespace {

// The whole file in the buffer torch::pickle_load takes: one read, no copy.
std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw not_found(path + ": cannot open");
  std::vector<char> bytes(static_cast<size_t>(in.tellg()));
  in.seekg(0);
  if (!in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    throw invalid_argument(path + ": cannot read " + std::to_string(bytes.size()) + " bytes");
  }
  return bytes;
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

void insert_tensor(StateDict& state, const std::string& raw_key, const at::Tensor& t, const std::string& source) {
  const auto key = checkpoint_tensor_name(raw_key);
  if (!key) return;
  if (!state.emplace(*key, to_fp32(t)).second) throw invalid_argument(source + ": duplicate key '" + *key + "'");
}

// With `views`, fp32 tensors stay read-only views of the file's mapping,
// which lives as long as any of them (for a loader that copies them into a
// model at once: one copy from the page cache instead of two); otherwise
// every tensor is an owning fp32 copy.
StateDict read_safetensors_tensors(const SafetensorsFile& file, bool views = false) {
  StateDict state;
  const auto keep = views ? std::make_shared<SafetensorsFile>(file) : nullptr;
  for (const auto& name : file.names()) {
    const TensorView& v = file.at(name);
    const auto options = torch::TensorOptions().dtype(to_scalar_type(v.dtype));
    auto* data = const_cast<uint8_t*>(v.data);
    if (views) {
      insert_tensor(state, name, torch::from_blob(data, v.shape, [keep](void*) {}, options), file.path());
      continue;
    }
    auto view = torch::from_blob(data, v.shape, options);
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
  const std::vector<char> bytes = read_bytes(path);
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
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

StateDict read_hf_folder(const std::string& dir, std::map<std::string, std::string>& metadata) {
  const std::vector<std::string> files = hf_safetensors_files(dir);
  if (files.empty()) return hf_to_open_clip(read_torch_state_dict(dir + "/pytorch_model.bin"), dir);
  StateDict hf;
  for (const auto& path : files) {
    const SafetensorsFile file = SafetensorsFile::open(path);
    if (files.size() == 1) metadata = file.metadata();
    for (auto& [k, v] : read_safetensors_tensors(file)) {
      if (!hf.emplace(k, v).second) throw invalid_argument(path + ": duplicate key '" + k + "'");
    }
  }
  return hf_to_open_clip(hf, dir);
}

}  // namespace

Checkpoint CheckpointReader::read(const std::string& path, const CheckpointReadOptions& options) {
  return read_impl(path, options, /*shapes_only=*/false, /*views=*/false);
}

Checkpoint CheckpointReader::read_header(const std::string& path, const CheckpointReadOptions& options) {
  Checkpoint ck = read_impl(path, options, /*shapes_only=*/true, /*views=*/false);
  ck.state.clear();  // a torch file was read whole
  return ck;
}

Checkpoint CheckpointReader::read_impl(const std::string& path, const CheckpointReadOptions& options,
                                       bool shapes_only, bool views) {
  Checkpoint ck;
  if (shapes_only) {
    if (auto header = read_checkpoint_header(path, options)) {
      static_cast<CheckpointHeader&>(ck) = std::move(*header);
      return ck;
    }
  }
  ck.path = path;
  ck.format = detect_checkpoint_format(path);
  std::optional<ClipConfig> declared;
  std::string declared_source;
  switch (ck.format) {
    case CheckpointFormat::kTorchScript:
      ck.state = read_torchscript(path);
      break;
    case CheckpointFormat::kTorchStateDict:
      ck.state = read_torch_state_dict(path);
      break;
    case CheckpointFormat::kSafetensors: {
      const SafetensorsFile file = SafetensorsFile::open(path, /*for_loading=*/views);
      ck.metadata = file.metadata();
      ck.state = read_safetensors_tensors(file, views);
      if (looks_like_hf_state_dict(ck.state)) ck.state = hf_to_open_clip(ck.state, path);
      declared = declared_architecture(ck.metadata, path);
      declared_source = "checkpoint metadata";
      break;
    }
    case CheckpointFormat::kHuggingFace:
      ck.state = read_hf_folder(path, ck.metadata);
      declared = ClipConfig::from_json_file(path + "/config.json");
      declared_source = "config.json";
      break;
  }
  ck.shapes = shapes_of(ck.state);
  settle_checkpoint_config(ck, std::move(declared), declared_source, options);
  return ck;
}

void load_state_dict_strict(ClipModel& model, const StateDict& state, const std::string& source, bool adopt) {
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
    const at::Tensor& value = it->second;
    const bool adoptable = adopt && value.device() == target.device() && value.scalar_type() == target.scalar_type() &&
                           value.is_contiguous() &&
                           reinterpret_cast<uintptr_t>(value.data_ptr()) % alignof(float) == 0;
    if (adoptable) {
      target.set_data(value);
    } else {
      target.copy_(value);
    }
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
  // A model whose random initialisation was skipped takes the tensors read:
  // for an fp32 safetensors file, views of its mapping (zero copies); for the
  // other forms, the fp32 tensors just read (no second copy).
  Checkpoint ck = read_impl(path, options, /*shapes_only=*/false, /*views=*/true);
  ClipModel model = [&] {
    SkipParameterInit skip;
    return ClipModel(ck.config);
  }();
  load_state_dict_strict(model, ck.state, path, /*adopt=*/true);
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
