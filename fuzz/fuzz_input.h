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
#include <string_view>
#include <vector>

#include "core/base/error.h"

namespace refinery::fuzz {

inline std::string input_path(const char* name) {
  static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return dir + "/refinery-fuzz-" + std::to_string(getpid()) + "-" + name;
}

// Writes `bytes` to `path`, replacing it.
inline void write_file(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
}

inline std::string as_file(const uint8_t* data, size_t size, const char* name) {
  const std::string path = input_path(name);
  write_file(path, std::string(reinterpret_cast<const char*>(data), size));
  return path;
}

// An input holding several files, split at each "\n--part--\n".
inline std::vector<std::string> split_parts(std::string_view data) {
  static constexpr std::string_view kSep = "\n--part--\n";
  std::vector<std::string> parts;
  for (;;) {
    const size_t at = data.find(kSep);
    if (at == std::string_view::npos) break;
    parts.emplace_back(data.substr(0, at));
    data.remove_prefix(at + kSep.size());
  }
  parts.emplace_back(data);
  return parts;
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
