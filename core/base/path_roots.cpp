#include "core/base/path_roots.h"

#include <limits.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/base/error.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;

bool resolve(const std::string& path, std::string* out) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return false;
  *out = buf;
  return true;
}

bool inside(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

}  // namespace

PathRoots::PathRoots(const std::vector<std::string>& roots, std::string flag) : flag_(std::move(flag)) {
  for (const auto& root : roots) {
    std::string resolved;
    if (root.empty() || !resolve(root, &resolved) || !fs::is_directory(resolved)) {
      throw invalid_argument(flag_ + " " + root + ": not an existing folder");
    }
    roots_.push_back(resolved);
  }
}

std::string PathRoots::check(const std::string& path, const std::string& what) const {
  if (path.empty()) throw invalid_argument(what + ": empty path");
  if (!confined()) return fs::absolute(fs::path(path)).lexically_normal().string();
  std::string resolved;
  if (!resolve(path, &resolved)) {
    if (errno != ENOENT) throw permission_denied(what + " " + path + ": cannot resolve (" + std::strerror(errno) + ")");
    // Not there (yet): its folder decides.
    const fs::path p = fs::absolute(fs::path(path)).lexically_normal();
    std::string folder;
    if (!p.has_filename() || !resolve(p.parent_path().string(), &folder)) {
      throw not_found(what + " " + path + ": no such file or folder");
    }
    resolved = (fs::path(folder) / p.filename()).string();
  }
  for (const auto& root : roots_) {
    if (inside(resolved, root)) return resolved;
  }
  throw permission_denied(what + " " + path + " is outside the folders this server allows (" + flag_ + ": " +
                          describe() + ")");
}

void PathRoots::check_existing(const std::vector<std::string>& paths, const std::string& what,
                               const std::string& context) const {
  if (!confined()) return;
  for (const auto& path : paths) {
    try {
      check(path, what);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound) throw Error(e.code(), context + ": " + e.what());
    }
  }
}

std::string PathRoots::describe() const {
  if (!confined()) return "anywhere";
  std::string s;
  for (const auto& r : roots_) s += (s.empty() ? "" : ", ") + r;
  return s;
}

}  // namespace refinery
