#include "core/train/training_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <torch/torch.h>

#include "core/base/atomic_file.h"
#include "core/base/disk_space.h"
#include "core/base/error.h"
#include "core/base/remove_tree.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "core/safetensors/safetensors.h"

namespace fs = std::filesystem;

namespace refinery {
namespace {

constexpr const char* kPrefix = "step-";

std::string folder_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

std::optional<TrainingCheckpointInfo> read_info(const fs::path& folder) {
  const fs::path state = folder / "state.json";
  std::error_code ec;
  if (!fs::is_regular_file(state, ec) || !fs::is_regular_file(folder / "model.safetensors", ec) ||
      !fs::is_regular_file(folder / "optimizer.safetensors", ec)) {
    return std::nullopt;
  }
  std::ifstream in(state);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("step")) return std::nullopt;
  TrainingCheckpointInfo info;
  info.path = folder.string();
  info.step = j.value("step", int64_t{0});
  info.images_skipped = j.value("images_skipped", int64_t{0});
  info.extra = j.value("extra", nlohmann::json::object());
  return info;
}

at::Tensor to_cpu_contiguous_f32(const at::Tensor& t) {
  return t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
}

}  // namespace

TrainingCheckpointInfo TrainingCheckpoint::save(const std::string& dir, int64_t step, int64_t images_skipped,
                                                ClipModel& student, AdamW& optimizer, const nlohmann::json& extra) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw internal_error("cannot create checkpoint folder " + dir + ": " + ec.message());
  // The weights and AdamW's two moments, in fp32.
  uint64_t values = 0;
  for (const auto& p : student->parameters()) values += static_cast<uint64_t>(p.numel());
  require_free_space(dir, values * 4 * 3, "the checkpoint of step " + std::to_string(step));
  const fs::path final_path = fs::path(dir) / folder_name(step);
  const fs::path tmp_path = fs::path(dir) / (".partial-" + folder_name(step));
  remove_tree(tmp_path, ec);
  fs::create_directories(tmp_path, ec);
  if (ec) throw internal_error("cannot create " + tmp_path.string() + ": " + ec.message());

  CheckpointWriter::write_safetensors(student, (tmp_path / "model.safetensors").string());

  SafetensorsWriter opt;
  std::vector<at::Tensor> keep_alive;
  for (auto& p : optimizer.params()) {
    for (const auto& [kind, tensor] : {std::pair<const char*, const at::Tensor*>{"exp_avg.", &p.exp_avg},
                                       std::pair<const char*, const at::Tensor*>{"exp_avg_sq.", &p.exp_avg_sq}}) {
      at::Tensor t = to_cpu_contiguous_f32(*tensor);
      opt.add_float32(kind + p.name, t.sizes().vec(), t.data_ptr<float>());
    }
  }
  opt.set_metadata("adamw.steps", std::to_string(optimizer.steps()));
  nlohmann::json param_steps = nlohmann::json::object();
  for (const auto& p : optimizer.params()) param_steps[p.name] = p.steps;
  opt.set_metadata("adamw.param_steps", param_steps.dump());
  opt.write((tmp_path / "optimizer.safetensors").string());

  nlohmann::json state = {{"format", 1}, {"step", step}, {"images_skipped", images_skipped}, {"extra", extra}};
  write_file_atomically((tmp_path / "state.json").string(), state.dump(2) + "\n");
  fsync_dir(tmp_path.string());

  remove_tree(final_path, ec);
  fs::rename(tmp_path, final_path, ec);
  if (ec) throw internal_error("cannot move checkpoint into " + final_path.string() + ": " + ec.message());
  fsync_dir(dir);

  TrainingCheckpointInfo info;
  info.path = final_path.string();
  info.step = step;
  info.images_skipped = images_skipped;
  info.extra = extra;
  return info;
}

std::vector<TrainingCheckpointInfo> TrainingCheckpoint::list(const std::string& dir) {
  std::vector<TrainingCheckpointInfo> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || !entry.is_directory()) continue;
    if (auto info = read_info(entry.path())) out.push_back(std::move(*info));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

std::optional<TrainingCheckpointInfo> TrainingCheckpoint::latest(const std::string& dir) {
  auto all = list(dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

void TrainingCheckpoint::load(const TrainingCheckpointInfo& checkpoint, ClipModel& student, AdamW& optimizer) {
  const std::string model_path = checkpoint.path + "/model.safetensors";
  Checkpoint weights = CheckpointReader::read(model_path);
  load_state_dict_strict(student, weights.state, model_path);

  const std::string opt_path = checkpoint.path + "/optimizer.safetensors";
  SafetensorsFile file = SafetensorsFile::open(opt_path);
  torch::NoGradGuard no_grad;
  for (auto& p : optimizer.params()) {
    for (const auto& [kind, target] : {std::pair<const char*, at::Tensor*>{"exp_avg.", &p.exp_avg},
                                       std::pair<const char*, at::Tensor*>{"exp_avg_sq.", &p.exp_avg_sq}}) {
      const std::string key = kind + p.name;
      if (!file.contains(key)) throw invalid_argument(opt_path + ": no tensor '" + key + "'");
      const TensorView& view = file.at(key);
      if (view.dtype != DType::kF32 || view.shape != target->sizes().vec()) {
        throw invalid_argument(opt_path + ": tensor '" + key + "' has the wrong dtype or shape");
      }
      at::Tensor src = torch::from_blob(const_cast<uint8_t*>(view.data), view.shape, torch::kFloat32);
      target->copy_(src);
    }
  }
  auto it = file.metadata().find("adamw.steps");
  auto per_param = file.metadata().find("adamw.param_steps");
  if (it == file.metadata().end() || per_param == file.metadata().end()) {
    throw invalid_argument(opt_path + ": no 'adamw.steps' / 'adamw.param_steps' in its metadata");
  }
  optimizer.set_steps(std::stoll(it->second));
  const nlohmann::json steps = nlohmann::json::parse(per_param->second, nullptr, /*allow_exceptions=*/false);
  for (auto& p : optimizer.params()) {
    if (!steps.is_object() || !steps.contains(p.name) || !steps[p.name].is_number_integer()) {
      throw invalid_argument(opt_path + ": no step count for '" + p.name + "' in 'adamw.param_steps'");
    }
    p.steps = steps[p.name].get<int64_t>();
  }
}

std::vector<TrainingCheckpointInfo> TrainingCheckpoint::prune(const std::string& dir, int keep) {
  auto all = list(dir);
  std::vector<TrainingCheckpointInfo> removed;
  const size_t k = static_cast<size_t>(std::max(keep, 1));
  while (all.size() > k) {
    remove(all.front().path);
    removed.push_back(all.front());
    all.erase(all.begin());
  }
  return removed;
}

void TrainingCheckpoint::remove(const std::string& path) {
  // Rename first so a crash mid-removal never leaves a half checkpoint that
  // looks complete.
  std::error_code ec;
  fs::path p(path);
  fs::path doomed = p.parent_path() / (".removing-" + p.filename().string());
  fs::rename(p, doomed, ec);
  remove_tree(ec ? p : doomed, ec);
}

}  // namespace refinery
