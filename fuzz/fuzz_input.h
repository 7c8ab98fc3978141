// What the fuzz targets share: the input as a file (most parsers read paths),
// in /dev/shm when there is one, rewritten for each input; and the rule that
// refinery::Error is the expected answer to bad input, while anything else
// escaping a parser (or a sanitizer report) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/base/error.h"

namespace refinery::fuzz {

inline std::string input_path(const char* name) {
  static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return dir + "/refinery-fuzz-" + std::to_string(getpid()) + "-" + name;
}

inline std::string as_file(const uint8_t* data, size_t size, const char* name) {
  const std::string path = input_path(name);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs `f`; a refinery::Error is a clean refusal.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

}  // namespace refinery::fuzz
