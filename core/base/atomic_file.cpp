#include "core/base/atomic_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace refinery {

Error write_error(const std::string& what, const std::string& path, int err, ErrorCode otherwise) {
  const std::string message = path + ": " + what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return resource_exhausted(message + " (free some disk space and retry)");
  return Error(otherwise, message);
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  std::string name = path + ".tmp-XXXXXX";
  std::vector<char> tmp(name.begin(), name.end());
  tmp.push_back('\0');
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);  // O_CREAT | O_EXCL, mode 0600
  if (fd < 0) throw write_error("cannot write", path, errno);
  const std::string tmp_path(tmp.data());
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp_path.c_str());
    throw write_error(what, path, err);
  };
  if (::fchmod(fd, 0644) != 0) fail("cannot set permissions");
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("write failed");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp_path.c_str());
    throw write_error("write failed", path, err);
  }
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_path.c_str());
    throw write_error("cannot replace", path, err);
  }
  const size_t slash = path.rfind('/');
  fsync_dir(slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash));
}

std::string make_temp_dir_beside(const std::string& path) {
  std::string name = path + ".tmp-XXXXXX";
  std::vector<char> tmp(name.begin(), name.end());
  tmp.push_back('\0');
  if (::mkdtemp(tmp.data()) == nullptr) throw write_error("cannot create a folder beside it", path, errno);
  return tmp.data();
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw write_error("cannot open folder", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) throw write_error("cannot fsync folder", dir, err);
}

void rename_path(const std::string& from, const std::string& to, ErrorCode otherwise) {
  if (::rename(from.c_str(), to.c_str()) != 0) throw write_error("cannot rename " + from + " to it", to, errno, otherwise);
}

}  // namespace refinery
