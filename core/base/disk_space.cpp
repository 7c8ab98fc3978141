#include "core/base/disk_space.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/base/error.h"

namespace refinery {
namespace {

constexpr uint64_t kMargin = uint64_t{64} << 20;

std::string megabytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

}  // namespace

static struct statvfs file_system_of(const std::string& dir) {
  std::filesystem::path p = std::filesystem::absolute(dir);
  std::error_code ec;
  while (!p.empty() && !std::filesystem::exists(p, ec) && p != p.root_path()) p = p.parent_path();
  struct statvfs st {};
  if (::statvfs(p.c_str(), &st) != 0) throw internal_error("cannot stat the file system of " + dir + ": " + std::strerror(errno));
  return st;
}

uint64_t free_disk_bytes(const std::string& dir) {
  const struct statvfs st = file_system_of(dir);
  return static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
}

uint64_t disk_size_bytes(const std::string& dir) {
  const struct statvfs st = file_system_of(dir);
  return static_cast<uint64_t>(st.f_blocks) * static_cast<uint64_t>(st.f_frsize);
}

void require_free_space(const std::string& dir, uint64_t bytes, const std::string& what) {
  const uint64_t free = free_disk_bytes(dir);
  if (free < bytes + kMargin) {
    throw resource_exhausted(what + " needs about " + megabytes(bytes) + " in " + dir + ", and " + megabytes(free) +
                             " are free: free some disk space and retry");
  }
}

}  // namespace refinery
