// Paths of the shared reference fixture and small helpers for tests.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <unistd.h>

#include "core/base/remove_tree.h"

namespace refinery::testing {

inline std::string fixture_dir() { return REFINERY_FIXTURE_DIR; }
inline std::string fixture(const std::string& name) { return fixture_dir() + "/" + name; }

// The device the device-aware tests run on: REFINERY_TEST_DEVICE (cuda,
// cuda:1, ...; scripts/gpu-check.sh sets it), else cpu.
inline std::string test_device() {
  const char* d = std::getenv("REFINERY_TEST_DEVICE");
  return d != nullptr && *d != '\0' ? d : "cpu";
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A fresh directory under $TMPDIR, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + std::string("/refinery-test-XXXXXX");
    path_ = mkdtemp(&tmpl[0]);
  }
  ~TempDir() {
    std::error_code ignored;
    remove_tree(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace refinery::testing
