// The verbs of `refinery`. Each add_* function registers its subcommands on
// the app; when one is selected on the command line its callback stores the
// work in `Command::run`, which main() calls after parsing, so a usage error
// is always reported before anything touches the network. New verb groups
// (jobs) add one function here and one file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "client/client_options.h"

namespace refinery::client {

struct Command {
  ClientOptions options;
  std::function<int()> run;  // returns the exit code; throws on failure
};

void add_health_command(CLI::App& app, Command& command);
void add_model_commands(CLI::App& app, Command& command);   // models list|show|import|export|delete
void add_embed_commands(CLI::App& app, Command& command);   // embed text|image, classify, rank
void add_index_commands(CLI::App& app, Command& command);   // index create|add|list|show|drop|delete, search
void add_bench_command(CLI::App& app, Command& command);    // bench embed
void add_job_commands(CLI::App& app, Command& command);     // jobs submit|watch|list|show|cancel|resume|delete
void add_eval_commands(CLI::App& app, Command& command);    // eval submit|compare
void add_sweep_commands(CLI::App& app, Command& command);   // sweep submit|watch|show|list|cancel|plot

}  // namespace refinery::client
