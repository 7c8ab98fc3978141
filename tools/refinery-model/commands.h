// The subcommands of refinery-model. Each add_* function registers one
// subcommand, its flags and a callback; when the subcommand is chosen on the
// command line the callback stores the work in `Command::run`, which main()
// calls after parsing, so --help and usage errors always come first. A new
// subcommand adds one function here and one file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "tools/refinery-model/tool_common.h"

namespace refinery::model_tool {

struct Command {
  CommonParams common;       // --threads, --quiet, --device, --model-config
  std::function<int()> run;  // returns the exit code; throws on failure
};

void add_info_command(CLI::App& app, Command& command);
void add_convert_command(CLI::App& app, Command& command);
void add_init_command(CLI::App& app, Command& command);
void add_bench_command(CLI::App& app, Command& command);

// With the I/O front ends only (not REFINERY_TORCH_ONLY).
void add_tokenize_command(CLI::App& app, Command& command);
void add_preprocess_command(CLI::App& app, Command& command);
void add_embed_command(CLI::App& app, Command& command);
void add_match_command(CLI::App& app, Command& command);
void add_eval_command(CLI::App& app, Command& command);
void add_compare_command(CLI::App& app, Command& command);
void add_make_data_command(CLI::App& app, Command& command);
void add_refine_command(CLI::App& app, Command& command);

}  // namespace refinery::model_tool
