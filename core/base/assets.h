// Where the project's shipped data lives (BPE merges, architectures, prompts):
// $REFINERY_ASSETS_DIR when set (installed copies, containers), else the
// source tree's assets/ compiled in.
#pragma once

#include <string>

namespace refinery {

std::string assets_dir();

}  // namespace refinery
