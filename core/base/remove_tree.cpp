#include "core/base/remove_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/base/error.h"

namespace refinery {
namespace {

void note(int& first_error, int e) {
  if (first_error == 0 && e != ENOENT) first_error = e;  // gone already: someone else removed it
}

// Empties the open folder `fd` (taken over and closed), depth first.
void remove_contents(int fd, std::uintmax_t& count, int& first_error) {
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    note(first_error, errno);
    close(fd);
    return;
  }
  const int parent = dirfd(d);
  while (dirent* e = readdir(d)) {
    const char* name = e->d_name;
    if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
    if (unlinkat(parent, name, 0) == 0) {  // a file or a link
      ++count;
      continue;
    }
    if (errno != EISDIR && errno != EPERM) {
      note(first_error, errno);
      continue;
    }
    const int sub = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      note(first_error, errno);
      continue;
    }
    remove_contents(sub, count, first_error);
    if (unlinkat(parent, name, AT_REMOVEDIR) == 0) {
      ++count;
    } else {
      note(first_error, errno);
    }
  }
  closedir(d);
}

}  // namespace

std::uintmax_t remove_tree(const std::string& path, std::error_code& ec) noexcept {
  ec.clear();
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) ec.assign(errno, std::generic_category());
    return 0;
  }
  std::uintmax_t count = 0;
  int first_error = 0;
  if (S_ISDIR(st.st_mode)) {
    const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      note(first_error, errno);
    } else {
      remove_contents(fd, count, first_error);
    }
    if (rmdir(path.c_str()) == 0) {
      ++count;
    } else {
      note(first_error, errno);
    }
  } else if (unlink(path.c_str()) == 0) {
    ++count;
  } else {
    note(first_error, errno);
  }
  if (first_error != 0) ec.assign(first_error, std::generic_category());
  return count;
}

std::uintmax_t remove_tree(const std::string& path) {
  std::error_code ec;
  const std::uintmax_t n = remove_tree(path, ec);
  if (ec) throw internal_error("cannot remove " + path + ": " + ec.message());
  return n;
}

}  // namespace refinery
