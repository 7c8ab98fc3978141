// Client paths confined to roots: what is inside after symlinks and `..`,
// what is outside, and the data sets that check every file they touch.
#include "core/base/path_roots.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "core/base/error.h"
#include "core/data/caption_dataset.h"
#include "core/data/class_dataset.h"
#include "support/fixture.h"
#include "support/errors.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;
using refinery::testing::TempDir;
using refinery::testing::write_file;

using testing::error_of;

// root/ (allowed) with a file, a folder, and symlinks: one to a file inside,
// one to the outside folder; outside/ beside it.
class PathRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "root/sub");
    fs::create_directories(dir_ / "outside");
    write_file(dir_ / "root/sub/a.txt", "a");
    write_file(dir_ / "outside/secret.txt", "the-file-content");
    fs::create_symlink(dir_ / "root/sub/a.txt", dir_ / "root/link-in");
    fs::create_symlink(dir_ / "outside", dir_ / "root/link-out");
    root_ = fs::canonical(dir_ / "root").string();
  }
  PathRoots roots() const { return PathRoots({dir_ / "root"}, "--data-root"); }

  TempDir dir_;
  std::string root_;
};

TEST_F(PathRootsTest, PathsInsideAreAllowedAndResolved) {
  const PathRoots r = roots();
  EXPECT_EQ(r.check(dir_ / "root/sub/a.txt", "data"), root_ + "/sub/a.txt");
  EXPECT_EQ(r.check(dir_ / "root/sub/../sub/a.txt", "data"), root_ + "/sub/a.txt");
  EXPECT_EQ(r.check(dir_ / "root/link-in", "data"), root_ + "/sub/a.txt");
  EXPECT_EQ(r.check(dir_ / "root", "data"), root_);
  // Not there yet: judged by its folder.
  EXPECT_EQ(r.check(dir_ / "root/sub/new.safetensors", "export path"), root_ + "/sub/new.safetensors");
}

TEST_F(PathRootsTest, PathsOutsideAreRefusedNamingThePathAndTheRoots) {
  const PathRoots r = roots();
  for (const std::string& path : {dir_ / "outside/secret.txt", dir_ / "root/../outside/secret.txt",
                                  dir_ / "root/link-out/secret.txt", dir_ / "root/link-out", std::string("/etc/passwd"),
                                  dir_ / "root/link-out/new.safetensors", dir_ / "rootless.txt"}) {
    const Error e = error_of([&] { r.check(path, "data set file"); });
    EXPECT_EQ(e.code(), ErrorCode::kPermissionDenied) << path;
    EXPECT_NE(std::string(e.what()).find("data set file " + path + " is outside the folders this server allows "
                                         "(--data-root: " + root_ + ")"),
              std::string::npos)
        << e.what();
    EXPECT_EQ(std::string(e.what()).find("the-file-content"), std::string::npos) << e.what();
  }
  // A sibling whose name starts like the root is not inside it.
  fs::create_directories(dir_ / "root-evil");
  EXPECT_EQ(error_of([&] { r.check(dir_ / "root-evil", "data"); }).code(), ErrorCode::kPermissionDenied);
}

TEST_F(PathRootsTest, MissingFoldersAndRootsAreReported) {
  EXPECT_EQ(error_of([&] { roots().check(dir_ / "root/nope/x.txt", "export path"); }).code(), ErrorCode::kNotFound);
  const Error e = error_of([&] { PathRoots({dir_ / "absent"}, "--export-root"); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("--export-root " + (dir_ / "absent") + ": not an existing folder"),
            std::string::npos);
  EXPECT_EQ(PathRoots().check("relative/x", "data"), (fs::current_path() / "relative/x").string());  // unconfined
}

TEST_F(PathRootsTest, ACaptionDataSetIsCheckedFileByFileAndImageByImage) {
  const std::string images = refinery::testing::fixture("images");
  fs::copy_file(images + "/camera.png", dir_ / "root/camera.png");
  fs::copy_file(images + "/rocket.jpg", dir_ / "outside/rocket.jpg");
  write_file(dir_ / "root/good.csv", "filepath,caption\ncamera.png,a camera\nsub/../camera.png,the same camera\n");
  write_file(dir_ / "root/bad.csv", "filepath,caption\ncamera.png,a camera\nlink-out/rocket.jpg,a rocket\n");
  write_file(dir_ / "outside/set.csv", "filepath,caption\nrocket.jpg,a rocket\n");
  const PathRoots r = roots();
  CaptionDatasetOptions o;
  o.roots = &r;
  EXPECT_EQ(load_caption_dataset("csv:" + (dir_ / "root/good.csv"), o).items.size(), 1u);

  const Error image = error_of([&] { load_caption_dataset("csv:" + (dir_ / "root/bad.csv"), o); });
  EXPECT_EQ(image.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(std::string(image.what()).find("image " + root_ + "/link-out/rocket.jpg is outside"), std::string::npos)
      << image.what();
  EXPECT_EQ(error_of([&] { load_caption_dataset("csv:" + (dir_ / "outside/set.csv"), o); }).code(),
            ErrorCode::kPermissionDenied);
  EXPECT_EQ(error_of([&] { load_caption_dataset("coco:" + (dir_ / "root/x.json") + ":" + (dir_ / "outside"), o); })
                .code(),
            ErrorCode::kPermissionDenied);
  // A missing image inside the root is the usual "does not exist" error.
  write_file(dir_ / "root/missing.csv", "filepath,caption\ncamera.png,a camera\nnone.png,nothing\n");
  const Error missing = error_of([&] { load_caption_dataset("csv:" + (dir_ / "root/missing.csv"), o); });
  EXPECT_EQ(missing.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(missing.what()).find("1 of 2 image files do not exist"), std::string::npos) << missing.what();
}

TEST_F(PathRootsTest, AClassFolderWithASymlinkOutIsRefused) {
  const std::string images = refinery::testing::fixture("images");
  fs::create_directories(dir_ / "root/classes/cat");
  fs::create_directories(dir_ / "root/classes/dog");
  fs::copy_file(images + "/chelsea.png", dir_ / "root/classes/cat/chelsea.png");
  fs::copy_file(images + "/camera.png", dir_ / "root/classes/dog/camera.png");
  fs::copy_file(images + "/rocket.jpg", dir_ / "outside/rocket.jpg");
  const PathRoots r = roots();
  ClassDatasetOptions o;
  o.roots = &r;
  EXPECT_EQ(load_class_dataset("folder:" + (dir_ / "root/classes"), o).items.size(), 2u);
  fs::create_symlink(dir_ / "outside/rocket.jpg", dir_ / "root/classes/dog/rocket.jpg");
  const Error e = error_of([&] { load_class_dataset("folder:" + (dir_ / "root/classes"), o); });
  EXPECT_EQ(e.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(std::string(e.what()).find("rocket.jpg is outside"), std::string::npos) << e.what();
  EXPECT_EQ(error_of([&] { load_class_dataset("folder:" + (dir_ / "outside"), o); }).code(),
            ErrorCode::kPermissionDenied);
}

}  // namespace
}  // namespace refinery
