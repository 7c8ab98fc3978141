#include "tools/refinery-model/tool_common.h"

#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "core/base/error.h"

namespace refinery::model_tool {

using nlohmann::json;

void add_common(CLI::App* cmd, CommonParams& c, bool with_model) {
  cmd->add_option("--threads", c.threads, "Intra-op threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("-q,--quiet", c.quiet, "No log lines or progress bar on stderr");
  if (with_model) {
    cmd->add_option("--device", c.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
    cmd->add_option("--model-config", c.model_config,
                    "open_clip model-config JSON or HF config.json overriding the checkpoint's architecture");
  }
}

RuntimeInfo setup_runtime(const CommonParams& p) {
  RuntimeOptions o;
  o.threads = p.threads;
  o.device = p.device;
  RuntimeInfo info = configure_runtime(o);
  if (!p.quiet) std::fprintf(stderr, "refinery-model: %s\n", info.summary().c_str());
  return info;
}

ProgressBarOptions progress_options(const CommonParams& p, const std::string& label, const std::string& unit) {
  ProgressBarOptions o;
  o.label = label;
  o.unit = unit;
  if (p.quiet) o.mode = ProgressBarOptions::Mode::kNever;
  return o;
}

CheckpointReadOptions read_options(const CommonParams& p) {
  CheckpointReadOptions o;
  o.model_config_path = p.model_config;
  return o;
}

std::vector<std::string> read_texts_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw not_found(path + ": cannot open texts file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw invalid_argument(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_array()) throw invalid_argument(path + ": must be a JSON array of strings");
  std::vector<std::string> texts;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) throw invalid_argument(path + ": item " + std::to_string(i) + " is not a string");
    texts.push_back(j[i].get<std::string>());
  }
  return texts;
}

void write_tensor(SafetensorsWriter& w, const std::string& name, const at::Tensor& t) {
  auto c = t.contiguous();
  if (c.scalar_type() == torch::kInt) {
    w.add_int32(name, c.sizes().vec(), c.data_ptr<int32_t>());
  } else {
    c = c.to(torch::kFloat);
    w.add_float32(name, c.sizes().vec(), c.data_ptr<float>());
  }
}

json matrix_json(const at::Tensor& t) {
  json rows = json::array();
  auto c = t.contiguous().to(torch::kFloat);
  for (int64_t i = 0; i < c.size(0); ++i) {
    auto row = c[i];
    rows.push_back(std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel()));
  }
  return rows;
}

}  // namespace refinery::model_tool
