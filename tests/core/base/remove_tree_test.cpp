// remove_tree: what std::filesystem::remove_all does (the product calls this
// instead, see remove_tree.h), checked against the file system itself.
#include "core/base/remove_tree.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "core/base/error.h"
#include "support/errors.h"
#include "support/fixture.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

bool present(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

TEST(RemoveTree, RemovesAFolderAndEverythingUnderItCountingEach) {
  TempDir dir;
  const std::string root = dir / "job";
  fs::create_directories(root + "/a/b/c");
  fs::create_directories(root + "/empty");
  testing::write_file(root + "/top.txt", "x");
  testing::write_file(root + "/a/one.bin", "1");
  testing::write_file(root + "/a/b/c/deep.bin", "22");
  std::error_code ec;
  // root, a, b, c, empty, top.txt, one.bin, deep.bin
  EXPECT_EQ(remove_tree(root, ec), 8u);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(present(root));
  EXPECT_TRUE(present(dir.path()));  // only what was named
}

TEST(RemoveTree, RemovesLinksWithoutFollowingThem) {
  TempDir dir;
  const std::string keep = dir / "keep";
  fs::create_directories(keep);
  testing::write_file(keep + "/precious.txt", "do not delete");
  const std::string root = dir / "doomed";
  fs::create_directories(root);
  ASSERT_EQ(symlink(keep.c_str(), (root + "/to-folder").c_str()), 0);
  ASSERT_EQ(symlink((keep + "/precious.txt").c_str(), (root + "/to-file").c_str()), 0);
  std::error_code ec;
  EXPECT_EQ(remove_tree(root, ec), 3u);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(present(root));
  EXPECT_EQ(testing::read_file(keep + "/precious.txt"), "do not delete");
  // A link named itself is removed, its target kept.
  ASSERT_EQ(symlink(keep.c_str(), (dir / "link").c_str()), 0);
  EXPECT_EQ(remove_tree(dir / "link"), 1u);
  EXPECT_FALSE(present(dir / "link"));
  EXPECT_TRUE(present(keep + "/precious.txt"));
}

TEST(RemoveTree, AFileIsOneAndAMissingPathIsNothing) {
  TempDir dir;
  testing::write_file(dir / "f", "x");
  EXPECT_EQ(remove_tree(dir / "f"), 1u);
  EXPECT_FALSE(present(dir / "f"));
  std::error_code ec;
  EXPECT_EQ(remove_tree(dir / "never-was", ec), 0u);
  EXPECT_FALSE(ec);
}

TEST(RemoveTree, AnErrorIsReportedNamingThePath) {
  TempDir dir;
  testing::write_file(dir / "f", "x");
  const std::string bad = dir / "f/inside";  // under a file
  std::error_code ec;
  EXPECT_EQ(remove_tree(bad, ec), 0u);
  EXPECT_EQ(ec, std::errc::not_a_directory) << ec.message();
  const std::string what = testing::expect_error([&] { remove_tree(bad); }, ErrorCode::kInternal).what();
  EXPECT_NE(what.find(bad), std::string::npos) << what;
  EXPECT_TRUE(present(dir / "f"));
}

}  // namespace
}  // namespace refinery
