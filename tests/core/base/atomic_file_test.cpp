// Files written atomically: whole or not at all, no temporary left behind,
// concurrent writers of one path never mix their bytes, and a full disk is
// RESOURCE_EXHAUSTED.
#include "core/base/atomic_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <thread>
#include <vector>

#include "core/base/disk_space.h"
#include "support/fixture.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;
using refinery::testing::read_file;
using refinery::testing::TempDir;
using refinery::testing::write_file;

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicFile, ReplacesTheFileAndLeavesNothingElse) {
  TempDir dir;
  write_file(dir / "models.json", "old");
  write_file_atomically(dir / "models.json", "new contents\n");
  EXPECT_EQ(read_file(dir / "models.json"), "new contents\n");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"models.json"});
  EXPECT_EQ(fs::status(dir / "models.json").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
}

TEST(AtomicFile, AFailedWriteNamesThePathAndLeavesTheOldFile) {
  TempDir dir;
  try {
    write_file_atomically(dir / "missing/models.json", "x");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(dir / "missing/models.json"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(AtomicFile, ConcurrentWritersOfOnePathNeverMixTheirBytes) {
  TempDir dir;
  const std::string path = dir / "state.json";
  std::vector<std::string> versions;
  for (int i = 0; i < 8; ++i) versions.push_back(std::string(200000 + i * 1000, static_cast<char>('a' + i)));
  std::vector<std::thread> writers;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 8; ++i) writers.emplace_back([&, i] { write_file_atomically(path, versions[i]); });
    for (auto& t : writers) t.join();
    writers.clear();
    const std::string got = read_file(path);
    EXPECT_NE(std::find(versions.begin(), versions.end(), got), versions.end())
        << "a mixed or truncated file of " << got.size() << " bytes";
  }
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"state.json"});
}

TEST(AtomicFile, APlantedSymlinkIsReplacedNotFollowed) {
  TempDir dir;
  write_file(dir / "target.txt", "precious");
  fs::create_symlink(dir / "target.txt", dir / "out.json");
  write_file_atomically(dir / "out.json", "written");
  EXPECT_EQ(read_file(dir / "target.txt"), "precious");
  EXPECT_FALSE(fs::is_symlink(dir / "out.json"));
  EXPECT_EQ(read_file(dir / "out.json"), "written");
}

TEST(AtomicFile, AFullDiskIsResourceExhausted) {
  EXPECT_EQ(write_error("write failed", "/data/x", ENOSPC).code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(write_error("write failed", "/data/x", EDQUOT).code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(write_error("cannot write", "/data/x", EACCES).code(), ErrorCode::kInvalidArgument);
  TempDir dir;
  const uint64_t free = free_disk_bytes(dir.path());
  EXPECT_GT(free, 0u);
  EXPECT_NO_THROW(require_free_space(dir.path(), 1, "a small write"));
  try {
    require_free_space(dir / "not/yet/made", free * 2, "the checkpoint of step 7");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_NE(std::string(e.what()).find("the checkpoint of step 7 needs about"), std::string::npos) << e.what();
  }
}

TEST(AtomicFile, TempFoldersAreFreshAndBesideTheTarget) {
  TempDir dir;
  const std::string a = make_temp_dir_beside(dir / "hf-export");
  const std::string b = make_temp_dir_beside(dir / "hf-export");
  EXPECT_NE(a, b);
  EXPECT_EQ(fs::path(a).parent_path(), fs::path(dir.path()));
  EXPECT_TRUE(fs::is_directory(a) && fs::is_empty(a));
}

TEST(AtomicFile, RenamePathMovesAFolderAndAFailureNamesBothPaths) {
  TempDir dir;
  fs::create_directory(dir / "staging");
  write_file(dir / "staging/index.json", "{}");
  rename_path(dir / "staging", dir / "live");
  EXPECT_EQ(read_file(dir / "live/index.json"), "{}");
  EXPECT_FALSE(fs::exists(dir / "staging"));
  try {
    rename_path(dir / "staging", dir / "other");
    FAIL() << "renaming a missing folder succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);  // the server's own files: not the caller's fault
    EXPECT_NE(std::string(e.what()).find(dir / "staging"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir / "other"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace refinery
