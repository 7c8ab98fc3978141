#include "core/index/durable_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace refinery::index_internal {

namespace fs = std::filesystem;

std::string parent_of(const std::string& dir) {
  fs::path p = fs::path(dir).parent_path();
  return p.empty() ? "." : p.string();
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

void check_file(const std::string& path, uint64_t expected_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) != expected_bytes) {
    throw invalid_argument(path + ": truncated or corrupt: " + std::to_string(st.st_size) + " bytes, expected " +
                           std::to_string(expected_bytes));
  }
}

uint64_t read_exact(const std::string& path, void* dst, uint64_t n) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
  Checksum sum;
  auto p = static_cast<char*>(dst);
  uint64_t left = n;
  while (left > 0) {
    ssize_t r = ::read(fd, p, static_cast<size_t>(std::min<uint64_t>(left, size_t{1} << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = errno;
      ::close(fd);
      throw invalid_argument(path + ": truncated or unreadable" + (r < 0 ? std::string(": ") + std::strerror(err) : ""));
    }
    sum.update(p, static_cast<size_t>(r));
    p += r;
    left -= static_cast<uint64_t>(r);
  }
  ::close(fd);
  return sum.digest();
}

uint64_t checksum_file(const std::string& path, uint64_t n) {
  std::vector<char> buf(size_t{1} << 20);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
  Checksum sum;
  uint64_t left = n;
  while (left > 0) {
    ssize_t r = ::read(fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      throw invalid_argument(path + ": truncated or unreadable");
    }
    sum.update(buf.data(), static_cast<size_t>(r));
    left -= static_cast<uint64_t>(r);
  }
  ::close(fd);
  return sum.digest();
}

void check_checksum(const std::string& path, uint64_t actual, const std::string& expected_hex) {
  if (Checksum::hex(actual) != expected_hex) {
    throw invalid_argument(path + ": corrupt (checksum " + Checksum::hex(actual) + ", manifest says " + expected_hex +
                           ")");
  }
}

}  // namespace refinery::index_internal
