// `refinery-model info CKPT`: the checkpoint's format and inferred
// architecture as JSON.
#include <torch/torch.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_reader.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct InfoParams { std::string checkpoint; };

// Parameters whose name starts (or, with `invert`, does not start) with prefix.
int64_t count_params(ClipModel& model, const std::string& prefix, bool invert = false) {
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) {
    if ((p.key().rfind(prefix, 0) == 0) != invert) n += p.value().numel();
  }
  return n;
}

int run_info(const InfoParams& p, const CommonParams& common) {
  setup_runtime(common);
  Checkpoint ck;
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common), &ck);
  json out;
  out["path"] = p.checkpoint;
  out["format"] = checkpoint_format_name(ck.format);
  out["config_source"] = ck.config_source;
  out["architecture"] = ck.config.to_open_clip_json();
  out["parameters"] = {{"total", count_params(model, "")},
                       {"visual", count_params(model, "visual.")},
                       {"text", count_params(model, "visual.", /*invert=*/true)}};
  out["logit_scale"] = model->logit_scale.item<double>();
  if (!ck.metadata.empty()) out["metadata"] = ck.metadata;
  std::cout << out.dump(2) << "\n";
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<InfoParams>();
  InfoParams& info = *params;
  CommonParams& common = command.common;
  auto* info_cmd = app.add_subcommand("info", "Print the checkpoint's format and inferred architecture as JSON");
  info_cmd->add_option("checkpoint", info.checkpoint, "CKPT")->required();
  add_common(info_cmd, common, true);
  info_cmd->callback([&command, params] {
    command.run = [&command, params] { return run_info(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
