// `refinery-model convert CKPT OUT`: rewrites a checkpoint as .safetensors
// (open_clip names) or a Hugging Face folder.
#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

struct ConvertParams {
  std::string checkpoint, output;
  std::string format = "safetensors";  // safetensors | hf
  std::string precision = "fp32";      // fp32 | fp16
};

int run_convert(const ConvertParams& p, const CommonParams& common) {
  setup_runtime(common);
  Checkpoint ck;
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common), &ck);
  CheckpointWriteOptions o;
  o.precision = parse_weight_precision(p.precision);
  o.metadata["refinery.source"] = p.checkpoint;
  if (p.format == "safetensors") {
    CheckpointWriter::write_safetensors(model, p.output, o);
  } else if (p.format == "hf") {
    CheckpointWriter::write_hf_folder(model, p.output, o);
  } else {
    throw invalid_argument("--format must be safetensors or hf, got '" + p.format + "'");
  }
  if (!common.quiet) {
    std::fprintf(stderr, "refinery-model: wrote %s (%s, %s) from %s (%s)\n", p.output.c_str(), p.format.c_str(),
                 p.precision.c_str(), p.checkpoint.c_str(), checkpoint_format_name(ck.format));
  }
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<ConvertParams>();
  ConvertParams& conv = *params;
  CommonParams& common = command.common;
  auto* conv_cmd = app.add_subcommand("convert", "Convert a checkpoint to .safetensors (open_clip names) or an HF folder");
  conv_cmd->add_option("checkpoint", conv.checkpoint, "CKPT")->required();
  conv_cmd->add_option("output", conv.output, "OUT file (safetensors) or folder (hf)")->required();
  conv_cmd->add_option("--format", conv.format, "safetensors or hf")->capture_default_str();
  conv_cmd->add_option("--precision", conv.precision, "fp32 or fp16")->capture_default_str();
  add_common(conv_cmd, common, true);
  conv_cmd->callback([&command, params] {
    command.run = [&command, params] { return run_convert(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
