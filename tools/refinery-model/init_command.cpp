// `refinery-model init --arch NAME --out OUT`: a randomly initialised model
// of a built-in architecture.
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "core/model/clip_config.h"
#include "core/model/clip_model.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct InitParams {
  std::string arch, output, format = "safetensors", precision = "fp32";
  uint64_t seed = 0;
};

int run_init(const InitParams& p, const CommonParams& common) {
  setup_runtime(common);
  ClipModel model(builtin_architecture(p.arch));
  model->reset_parameters_random(p.seed);
  CheckpointWriteOptions o;
  o.precision = parse_weight_precision(p.precision);
  o.metadata["refinery.init"] = json{{"arch", p.arch}, {"seed", p.seed}}.dump();
  if (p.format == "safetensors") {
    CheckpointWriter::write_safetensors(model, p.output, o);
  } else if (p.format == "hf") {
    CheckpointWriter::write_hf_folder(model, p.output, o);
  } else {
    throw invalid_argument("--format must be safetensors or hf, got '" + p.format + "'");
  }
  if (!common.quiet) std::fprintf(stderr, "refinery-model: wrote a random %s to %s\n", p.arch.c_str(), p.output.c_str());
  return 0;
}

}  // namespace

void add_init_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<InitParams>();
  InitParams& init = *params;
  CommonParams& common = command.common;
  auto* init_cmd = app.add_subcommand("init", "Write a randomly initialised model of a built-in architecture");
  init_cmd->add_option("--arch", init.arch, "Architecture: " + [] {
    std::string s;
    for (const auto& n : builtin_architectures()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }())->required();
  init_cmd->add_option("--out", init.output, "Output file (safetensors) or folder (hf)")->required();
  init_cmd->add_option("--seed", init.seed, "Random seed")->capture_default_str();
  init_cmd->add_option("--format", init.format, "safetensors or hf")->capture_default_str();
  init_cmd->add_option("--precision", init.precision, "fp32 or fp16")->capture_default_str();
  add_common(init_cmd, common, false);
  init_cmd->callback([&command, params] {
    command.run = [&command, params] { return run_init(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
