// What the subcommands of refinery-model share: the options of the ones that
// run the model and small helpers for their inputs and outputs.
#pragma once

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/progress_bar.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/runtime/torch_runtime.h"
#include "core/safetensors/safetensors.h"

namespace refinery::model_tool {

// Options shared by the subcommands that run the model.
struct CommonParams {
  int threads = 0;              // 0 = all cores
  std::string device = "cpu";   // auto | cpu | cuda[:N]
  std::string model_config;     // optional open_clip / HF config override
  bool quiet = false;
};

// Adds --threads and -q,--quiet, and with `with_model` --device and --model-config.
void add_common(CLI::App* cmd, CommonParams& c, bool with_model);

RuntimeInfo setup_runtime(const CommonParams& p);

// A progress bar on stderr: drawn on a terminal, never with --quiet.
ProgressBarOptions progress_options(const CommonParams& p, const std::string& label, const std::string& unit);
CheckpointReadOptions read_options(const CommonParams& p);

// A JSON array of strings.
std::vector<std::string> read_texts_file(const std::string& path);

void write_tensor(SafetensorsWriter& w, const std::string& name, const at::Tensor& t);
nlohmann::json matrix_json(const at::Tensor& t);

// bench --texts: `batch` rows of tokens, cycling through the file's texts.
// Defined in bench_texts.cpp, which only builds with the I/O front ends
// (not REFINERY_TORCH_ONLY).
at::Tensor bench_text_tokens(const std::string& texts_file, int batch, int context_length);

}  // namespace refinery::model_tool
