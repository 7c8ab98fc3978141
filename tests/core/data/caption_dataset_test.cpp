// Caption data set specs: coco:, csv:, jsonl: parse to the right items and
// captions, and each kind of bad input is rejected naming the offender.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/data/caption_dataset.h"
#include "core/data/class_dataset.h"
#include "support/errors.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::expect_invalid;

namespace fs = std::filesystem;
using refinery::testing::TempDir;
using refinery::testing::write_file;

// A temp folder with images/{camera,palette,rocket} copied from the fixture.
class CaptionDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "images");
    const std::string src = refinery::testing::fixture("images");
    fs::copy_file(src + "/camera.png", dir_ / "images/camera.png");
    fs::copy_file(src + "/palette_color.png", dir_ / "images/palette.png");
    fs::copy_file(src + "/rocket.jpg", dir_ / "images/rocket.jpg");
  }
  std::string path(const std::string& name) const { return dir_ / name; }

  TempDir dir_;
};

// Runs `f`, expecting refinery::Error(kInvalidArgument) whose message holds
// every one of `parts` and none of `absent`.
// ------------------------------------------------------------------ parsing

TEST_F(CaptionDatasetTest, CocoGroupsCaptionsByImageAndDropsUncaptionedImages) {
  write_file(path("ann.json"), R"({
    "info": {"year": 2024},
    "images": [{"id": 7, "file_name": "camera.png", "width": 512},
               {"id": 3, "file_name": "palette.png"},
               {"id": 9, "file_name": "rocket.jpg"}],
    "annotations": [{"id": 1, "image_id": 3, "caption": "  a palette image\n"},
                    {"id": 2, "image_id": 7, "caption": "a camera man"},
                    {"id": 3, "image_id": 3, "caption": "colours, \"quoted\""}]
  })");
  const std::string spec = "coco:" + path("ann.json") + ":" + path("images");
  const CaptionDataset ds = load_caption_dataset(spec);
  EXPECT_EQ(ds.spec, spec);
  ASSERT_EQ(ds.items.size(), 2u);  // rocket has no annotation
  // Order of "images"; captions in annotation order, trimmed.
  EXPECT_EQ(ds.items[0].image_path, path("images/camera.png"));
  EXPECT_EQ(ds.items[0].captions, std::vector<std::string>{"a camera man"});
  EXPECT_EQ(ds.items[1].image_path, path("images/palette.png"));
  EXPECT_EQ(ds.items[1].captions, (std::vector<std::string>{"a palette image", "colours, \"quoted\""}));
  EXPECT_EQ(ds.caption_count(), 3u);
}

TEST_F(CaptionDatasetTest, CocoImageFolderMayBeRelativeToTheWorkingDirectory) {
  write_file(path("ann.json"), R"({"images": [{"id": "a", "file_name": "rocket.jpg"}],
                                  "annotations": [{"image_id": "a", "caption": "a rocket"}]})");
  const fs::path old = fs::current_path();
  fs::current_path(dir_.path());
  CaptionDataset ds;
  try {
    ds = load_caption_dataset("coco:ann.json:./images");
  } catch (...) {
    fs::current_path(old);
    throw;
  }
  fs::current_path(old);
  ASSERT_EQ(ds.items.size(), 1u);
  EXPECT_EQ(ds.items[0].image_path, path("images/rocket.jpg"));  // absolute, normalised
}

TEST_F(CaptionDatasetTest, CsvHandlesRfc4180QuotingAndMergesRowsOfOneImage) {
  // Extra column, CRLF line ends, a blank line, quoted commas, doubled quotes,
  // a line break inside quotes, an absolute path, and one image named twice.
  const std::string csv =
      "id,filepath,caption\r\n"
      "1,images/camera.png,\"a man, a camera\"\r\n"
      "2,\"images/palette.png\",\"she said \"\"hi\"\"\"\r\n"
      "\r\n"
      "3,images/camera.png,\"two\nlines\"\r\n"
      "4," + path("images/rocket.jpg") + ",  a rocket  \r\n"
      "5,./images/../images/camera.png,third\r\n";
  write_file(path("data.csv"), csv);
  const CaptionDataset ds = load_caption_dataset("csv:" + path("data.csv"));
  ASSERT_EQ(ds.items.size(), 3u);
  EXPECT_EQ(ds.items[0].image_path, path("images/camera.png"));
  EXPECT_EQ(ds.items[0].captions, (std::vector<std::string>{"a man, a camera", "two\nlines", "third"}));
  EXPECT_EQ(ds.items[1].image_path, path("images/palette.png"));
  EXPECT_EQ(ds.items[1].captions, std::vector<std::string>{"she said \"hi\""});
  EXPECT_EQ(ds.items[2].image_path, path("images/rocket.jpg"));
  EXPECT_EQ(ds.items[2].captions, std::vector<std::string>{"a rocket"});
  EXPECT_EQ(ds.caption_count(), 5u);
}

TEST_F(CaptionDatasetTest, CsvPathsAreRelativeToTheFilesFolder) {
  fs::create_directories(path("lists"));
  write_file(path("lists/d.csv"), "caption,filepath\nred,../images/palette.png\n");  // columns in either order
  const CaptionDataset ds = load_caption_dataset("csv:" + path("lists/d.csv"));
  ASSERT_EQ(ds.items.size(), 1u);
  EXPECT_EQ(ds.items[0].image_path, path("images/palette.png"));
  EXPECT_EQ(ds.items[0].captions, std::vector<std::string>{"red"});
}

TEST_F(CaptionDatasetTest, JsonlReadsOneObjectPerLineAndIgnoresBlankLines) {
  fs::create_directories(path("lists"));
  write_file(path("lists/d.jsonl"),
             "{\"image\": \"../images/rocket.jpg\", \"caption\": \"a rocket\"}\n"
             "\n"
             "   \n"
             "{\"caption\": \"tall \\\"rocket\\\"\", \"image\": \"../images/rocket.jpg\", \"extra\": 1}\r\n"
             "{\"image\": \"" + path("images/camera.png") + "\", \"caption\": \" camera \"}");  // no final newline
  const CaptionDataset ds = load_caption_dataset("jsonl:" + path("lists/d.jsonl"));
  ASSERT_EQ(ds.items.size(), 2u);
  EXPECT_EQ(ds.items[0].image_path, path("images/rocket.jpg"));
  EXPECT_EQ(ds.items[0].captions, (std::vector<std::string>{"a rocket", "tall \"rocket\""}));
  EXPECT_EQ(ds.items[1].image_path, path("images/camera.png"));
  EXPECT_EQ(ds.items[1].captions, std::vector<std::string>{"camera"});
}

// ------------------------------------------------------------------ errors

TEST_F(CaptionDatasetTest, UnknownOrMissingSchemeListsTheSchemes) {
  expect_invalid([&] { load_caption_dataset("parquet:" + path("x.parquet")); }, {"'parquet'", "coco", "csv", "jsonl"});
  expect_invalid([&] { load_caption_dataset(path("data.csv")); }, {"no scheme", "csv:FILE"});
  expect_invalid([&] { load_caption_dataset("csv:"); }, {"no file"});
}

TEST_F(CaptionDatasetTest, MissingOrUnreadableFilesAreNamed) {
  expect_invalid([&] { load_caption_dataset("csv:" + path("nope.csv")); }, {path("nope.csv"), "does not exist"});
  expect_invalid([&] { load_caption_dataset("jsonl:" + path("images")); }, {path("images"), "not a regular file"});
  expect_invalid([&] { load_caption_dataset("coco:" + path("nope.json") + ":" + path("images")); }, {path("nope.json")});
  write_file(path("ann.json"), R"({"images": [], "annotations": []})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("ann.json") + ":" + path("no-such-dir")); }, {path("no-such-dir")});
  expect_invalid([&] { load_caption_dataset("coco:" + path("ann.json")); }, {"image folder"});
}

TEST_F(CaptionDatasetTest, InvalidJsonNamesTheFileAndPosition) {
  write_file(path("ann.json"), "{\"images\": [\n  {\"id\": 1,, \"file_name\": \"camera.png\"}]}");
  expect_invalid([&] { load_caption_dataset("coco:" + path("ann.json") + ":" + path("images")); },
                 {path("ann.json"), "invalid JSON", "line 2"});
  write_file(path("d.jsonl"),
             "{\"image\": \"images/camera.png\", \"caption\": \"ok\"}\n"
             "\n"
             "{\"image\": \"images/camera.png\", \"caption\": \"broken}\n");
  expect_invalid([&] { load_caption_dataset("jsonl:" + path("d.jsonl")); }, {path("d.jsonl"), "line 3", "invalid JSON", "column"}, {"line 1"});
  write_file(path("e.jsonl"), "[\"images/camera.png\", \"cap\"]\n");
  expect_invalid([&] { load_caption_dataset("jsonl:" + path("e.jsonl")); }, {"line 1", "object"});
}

TEST_F(CaptionDatasetTest, MissingFieldsAndColumnsAreNamed) {
  write_file(path("a.json"), R"({"images": [{"id": 1, "file_name": "camera.png"}]})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("a.json") + ":" + path("images")); }, {"\"annotations\""});
  write_file(path("b.json"), R"({"images": [{"id": 1, "file_name": "camera.png"}, {"id": 2}], "annotations": []})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("b.json") + ":" + path("images")); }, {"images[1]", "\"file_name\""});
  write_file(path("c.json"), R"({"images": [{"id": 1, "file_name": "camera.png"}],
      "annotations": [{"image_id": 1, "caption": "ok"}, {"image_id": 1}]})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("c.json") + ":" + path("images")); }, {"annotations[1]", "\"caption\""});
  write_file(path("d.json"), R"({"images": [{"id": 1, "file_name": "camera.png"}, {"id": 1, "file_name": "rocket.jpg"}],
      "annotations": []})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("d.json") + ":" + path("images")); }, {"images[1]", "duplicate id 1"});

  write_file(path("a.csv"), "filepath,text\nimages/camera.png,hello\n");
  expect_invalid([&] { load_caption_dataset("csv:" + path("a.csv")); }, {"line 1", "'caption'", "2 fields"},
                 {"'filepath' column", "'text'"});
  write_file(path("b.csv"), "filepath,caption\nimages/camera.png,hello\nimages/rocket.jpg\n");
  expect_invalid([&] { load_caption_dataset("csv:" + path("b.csv")); }, {"line 3", "1 field"});
  write_file(path("c.csv"), "filepath,caption\nimages/camera.png,\"never closed\nimages/rocket.jpg,x\n");
  expect_invalid([&] { load_caption_dataset("csv:" + path("c.csv")); }, {"line 2", "unterminated"});
  write_file(path("d.csv"), "filepath,caption\nimages/camera.png,\"a\"b\n");
  expect_invalid([&] { load_caption_dataset("csv:" + path("d.csv")); }, {"line 2", "closing quote"});

  write_file(path("a.jsonl"), "{\"image\": \"images/camera.png\", \"caption\": \"x\"}\n{\"caption\": \"y\"}\n");
  expect_invalid([&] { load_caption_dataset("jsonl:" + path("a.jsonl")); }, {"line 2", "\"image\""});
  write_file(path("b.jsonl"), "{\"image\": \"images/camera.png\", \"caption\": 5}\n");
  expect_invalid([&] { load_caption_dataset("jsonl:" + path("b.jsonl")); }, {"line 1", "\"caption\"", "string"});
}

// A client can name any file the server can read as a data set: the error
// names the file and where it went wrong, and never echoes what it holds
// (a csv:/etc/passwd once answered with its first line).
TEST_F(CaptionDatasetTest, ErrorsNeverQuoteTheFilesText) {
  const std::string secret = "root:x:0:0:SECRET-7f3a:/root:/bin/bash";
  write_file(path("passwd"), secret + "\n" + secret + "\n");
  for (const std::string& spec : {"csv:" + path("passwd"), "jsonl:" + path("passwd"),
                                  "coco:" + path("passwd") + ":" + path("images")}) {
    expect_invalid([&] { load_caption_dataset(spec); }, {path("passwd")}, {"SECRET", "root:x"});
  }
  // JSON that breaks after some text, and a class set's CSV header.
  write_file(path("broken.json"), "{\"images\": [SECRET-7f3a]}");
  expect_invalid([&] { load_caption_dataset("coco:" + path("broken.json") + ":" + path("images")); },
                 {path("broken.json"), "invalid JSON", "column"}, {"SECRET"});
  expect_invalid([&] { load_class_dataset("csv:" + path("passwd")); }, {path("passwd"), "'filepath'"}, {"SECRET"});
}

TEST_F(CaptionDatasetTest, AnnotationsOfUnknownImagesAreNamed) {
  write_file(path("ann.json"), R"({"images": [{"id": 1, "file_name": "camera.png"}],
      "annotations": [{"image_id": 1, "caption": "ok"}, {"image_id": 99, "caption": "lost"}]})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("ann.json") + ":" + path("images")); },
                 {"annotations[1]", "image_id 99", "unknown image id"});
}

TEST_F(CaptionDatasetTest, EmptyCaptionsAreNamedWhereTheyAre) {
  write_file(path("a.csv"), "filepath,caption\nimages/camera.png,fine\nimages/rocket.jpg,\"  \"\nimages/palette.png,\n");
  expect_invalid([&] { load_caption_dataset("csv:" + path("a.csv")); }, {path("a.csv"), "2 empty captions", "line 3", "line 4"});
  write_file(path("a.jsonl"), "{\"image\": \"images/camera.png\", \"caption\": \"ok\"}\n{\"image\": \"images/camera.png\", \"caption\": \"\\n\"}\n");
  expect_invalid([&] { load_caption_dataset("jsonl:" + path("a.jsonl")); }, {"1 empty caption", "line 2"});
  write_file(path("ann.json"), R"({"images": [{"id": 4, "file_name": "camera.png"}],
      "annotations": [{"image_id": 4, "caption": ""}]})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("ann.json") + ":" + path("images")); }, {"annotations[0]", "image_id 4"});
}

TEST_F(CaptionDatasetTest, ADataSetWithoutCaptionsIsRejected) {
  write_file(path("a.csv"), "filepath,caption\n");
  expect_invalid([&] { load_caption_dataset("csv:" + path("a.csv")); }, {"no captions"});
  write_file(path("b.csv"), "");
  expect_invalid([&] { load_caption_dataset("csv:" + path("b.csv")); }, {"empty file"});
  write_file(path("a.jsonl"), "\n\n");
  expect_invalid([&] { load_caption_dataset("jsonl:" + path("a.jsonl")); }, {"no captions"});
  // Images without annotations are dropped, which here leaves nothing.
  write_file(path("ann.json"), R"({"images": [{"id": 1, "file_name": "camera.png"}], "annotations": []})");
  expect_invalid([&] { load_caption_dataset("coco:" + path("ann.json") + ":" + path("images")); }, {"no captions"});
}

TEST_F(CaptionDatasetTest, MissingImageFilesAreCountedAndTheFirstFewNamed) {
  std::string csv = "filepath,caption\nimages/camera.png,exists\n";
  for (int i = 0; i < 7; ++i) csv += "gone/" + std::to_string(i) + ".png,missing " + std::to_string(i) + "\n";
  write_file(path("a.csv"), csv);
  expect_invalid([&] { load_caption_dataset("csv:" + path("a.csv")); },
                 {"7 of 8 image files do not exist", path("gone/0.png"), path("gone/4.png")}, {path("gone/5.png"), "camera.png"});
  CaptionDatasetOptions two;
  two.max_offenders_listed = 2;
  expect_invalid([&] { load_caption_dataset("csv:" + path("a.csv"), two); }, {path("gone/1.png")}, {path("gone/2.png")});

  // Without the check the spec loads; the paths are still resolved.
  CaptionDatasetOptions unchecked;
  unchecked.check_images_exist = false;
  const CaptionDataset ds = load_caption_dataset("csv:" + path("a.csv"), unchecked);
  ASSERT_EQ(ds.items.size(), 8u);
  EXPECT_EQ(ds.items[7].image_path, path("gone/6.png"));
}

}  // namespace
}  // namespace refinery
