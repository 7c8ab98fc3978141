#include "core/checkpoint/checkpoint_writer.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/base/atomic_file.h"
#include "core/base/error.h"
#include "core/base/remove_tree.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/checkpoint/state_dict.h"
#include "core/safetensors/safetensors.h"

namespace refinery {
namespace {

void add_tensors(SafetensorsWriter& writer, const StateDict& state, WeightPrecision precision) {
  for (const auto& [name, value] : state) {
    at::Tensor t = value.detach().to(torch::kCPU);
    DType dtype = DType::kF32;
    if (t.is_floating_point()) {
      // logit_scale stays fp32: it is exponentiated, and OpenAI's fp16
      // checkpoints keep it fp32 too.
      const bool half = precision == WeightPrecision::kFloat16 && name != "logit_scale";
      t = t.to(half ? torch::kHalf : torch::kFloat).contiguous();
      dtype = half ? DType::kF16 : DType::kF32;
    } else {
      t = t.to(torch::kLong).contiguous();
      dtype = DType::kI64;
    }
    writer.add(name, dtype, t.sizes().vec(), t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  }
}

bool is_empty_or_missing_dir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return errno == ENOENT;
  bool empty = true;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
  }
  closedir(d);
  return empty;
}

}  // namespace

WeightPrecision parse_weight_precision(const std::string& name) {
  if (name == "fp32" || name == "float32") return WeightPrecision::kFloat32;
  if (name == "fp16" || name == "float16") return WeightPrecision::kFloat16;
  throw invalid_argument("unknown weight precision '" + name + "' (fp32 or fp16)");
}

void CheckpointWriter::write_safetensors(ClipModel& model, const std::string& path,
                                         const CheckpointWriteOptions& options) {
  SafetensorsWriter writer;
  add_tensors(writer, model_state_dict(model), options.precision);
  writer.set_metadata("format", "pt");
  writer.set_metadata("refinery.architecture", model->config().to_open_clip_json().dump());
  writer.set_metadata("refinery.version", REFINERY_VERSION);
  for (const auto& [k, v] : options.metadata) writer.set_metadata(k, v);
  writer.write(path);
}

void CheckpointWriter::write_hf_folder(ClipModel& model, const std::string& dir, const CheckpointWriteOptions& options) {
  if (!is_empty_or_missing_dir(dir)) {
    throw failed_precondition(dir + ": exists and is not empty; refusing to overwrite");
  }
  const std::string tmp = make_temp_dir_beside(dir);
  ::chmod(tmp.c_str(), 0755);
  try {
    const ClipConfig& c = model->config();
    SafetensorsWriter writer;
    add_tensors(writer, open_clip_to_hf(model_state_dict(model)), options.precision);
    writer.set_metadata("format", "pt");
    for (const auto& [k, v] : options.metadata) writer.set_metadata(k, v);
    writer.write(tmp + "/model.safetensors");
    nlohmann::json config = c.to_hf_json();
    config["torch_dtype"] = options.precision == WeightPrecision::kFloat16 ? "float16" : "float32";
    write_file_atomically(tmp + "/config.json", config.dump(2) + "\n");
    const nlohmann::json preprocessor = {
        {"crop_size", {{"height", c.vision.image_size}, {"width", c.vision.image_size}}},
        {"do_center_crop", true},
        {"do_normalize", true},
        {"do_resize", true},
        {"do_rescale", true},
        {"do_convert_rgb", true},
        {"resample", 3},
        {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
        {"image_std", {0.26862954, 0.26130258, 0.27577711}},
        {"size", {{"shortest_edge", c.vision.image_size}}},
        {"image_processor_type", "CLIPImageProcessor"}};
    write_file_atomically(tmp + "/preprocessor_config.json", preprocessor.dump(2) + "\n");
    ::rmdir(dir.c_str());  // empty target folder, if any
    fsync_dir(tmp);
    if (::rename(tmp.c_str(), dir.c_str()) != 0) throw write_error("cannot move the written folder into place", dir, errno);
    const size_t slash = dir.find_last_of('/');
    fsync_dir(slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash));
  } catch (...) {
    std::error_code ignored;
    remove_tree(tmp, ignored);
    throw;
  }
}

}  // namespace refinery
