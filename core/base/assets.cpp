#include "core/base/assets.h"

#include <cstdlib>

namespace refinery {

std::string assets_dir() {
  if (const char* env = std::getenv("REFINERY_ASSETS_DIR"); env != nullptr && *env != '\0') return env;
#ifdef REFINERY_ASSETS_DIR
  return REFINERY_ASSETS_DIR;
#else
  return "assets";
#endif
}

}  // namespace refinery
