// `refinery jobs plot ID [ID...] --output DIR`: a job's training curves as
// pictures (core/plot): every loss term, the learning rate and every
// validation metric against step, a series per job when several are given
// (to compare methods). The events come from the job's replayable history.
#pragma once

#include <CLI/CLI.hpp>

#include "client/commands.h"

namespace refinery::client {

void add_job_plot_command(CLI::App* jobs, Command& command);

}  // namespace refinery::client
