// Where client-named paths may lead. A server reads data sets, evaluation
// sets and checkpoints, and writes exports, at paths its clients name; the
// operator confines each kind of path to a few folders (roots). A path is
// allowed when, with every symlink and `..` resolved, it lies inside one of
// the roots. A path that does not exist yet (an export's target) is judged by
// its folder, which must exist.
//
// Checking is by name, before the file is opened: whoever can write inside a
// root can still swap a symlink between the check and the open. Roots are for
// folders that clients cannot write to by other means.
#pragma once

#include <string>
#include <vector>

namespace refinery {

class PathRoots {
 public:
  // No roots: every path is allowed (the offline tools, tests).
  PathRoots() = default;
  // `roots` must exist (they are resolved now); `flag` names where they come
  // from in messages ("--data-root"). Throws invalid_argument naming a root
  // that does not exist.
  PathRoots(const std::vector<std::string>& roots, std::string flag);

  bool confined() const { return !roots_.empty(); }
  const std::vector<std::string>& roots() const { return roots_; }

  // `path` resolved (absolute, symlinks followed). Throws permission_denied
  // naming `path`, `what` it is ("data", "image", "export path") and the
  // roots when it lies outside them; not_found when neither it nor its
  // folder exists. Unconfined: the path made absolute, lexically.
  std::string check(const std::string& path, const std::string& what) const;

  // check() of each of `paths` (as `what`) where it exists: a missing file is
  // left to the caller, which reports all of them at once. The error of the
  // first path out of the roots is prefixed with `context` ("data set 'x'").
  void check_existing(const std::vector<std::string>& paths, const std::string& what,
                      const std::string& context) const;

  // "ROOT, ROOT" ("anywhere" when not confined), for logs.
  std::string describe() const;

 private:
  std::vector<std::string> roots_;  // resolved
  std::string flag_;
};

}  // namespace refinery
