// Image-caption data sets for fine-tuning, named by a SPEC string:
//
//   coco:ANNOTATIONS.json:IMAGE_DIR  COCO captions: "images": [{"id", "file_name"}],
//                                    "annotations": [{"image_id", "caption"}];
//                                    file_name is relative to IMAGE_DIR.
//   csv:FILE                         a header row naming the columns `filepath` and
//                                    `caption` (others are ignored), RFC 4180 quoting;
//                                    paths relative to FILE's folder.
//   jsonl:FILE                       one {"image": ..., "caption": ...} object per line,
//                                    blank lines ignored; paths relative to FILE's folder.
//
// Several rows naming the same image are one item with several captions.
// Items keep the order in which their image first appears (COCO: the order
// of "images"); captions keep file order. Image paths come out absolute and
// lexically normalised, so a data set does not depend on the working
// directory after loading. Paths are on the server's disk.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/base/path_roots.h"

namespace refinery {

struct CaptionedImage {
  std::string image_path;             // absolute, lexically normalised
  std::vector<std::string> captions;  // at least one, each non-empty and trimmed
};

struct CaptionDataset {
  std::string spec;  // as given to load_caption_dataset
  std::vector<CaptionedImage> items;
  size_t caption_count() const;  // over all items
};

struct CaptionDatasetOptions {
  bool check_images_exist = true;    // stat every image file while loading
  size_t max_offenders_listed = 5;   // how many empty captions / missing files a message names
  // The spec's files are checked before they are read, and every image path
  // before it is looked at: PERMISSION_DENIED naming the first outside them.
  const PathRoots* roots = nullptr;
};

// The spec schemes understood, for messages and --help: "coco", "csv", "jsonl".
const std::vector<std::string>& caption_dataset_schemes();

// Parses and checks a spec. Throws refinery::Error (kInvalidArgument) whose
// message names the first offenders: an unknown scheme (listing the schemes),
// a missing or unreadable file, invalid JSON (with the parser's position; the
// line number for jsonl), a CSV quoting error (with its line), missing
// required fields or columns (which, on which line or record), an annotation
// naming an unknown image id, empty captions (where), a data set without any
// caption, and image files that do not exist (how many, and the first few).
// Captions are trimmed of surrounding whitespace and otherwise kept as given.
// COCO images without any annotation are dropped, unless that leaves nothing.
CaptionDataset load_caption_dataset(const std::string& spec, const CaptionDatasetOptions& options = {});

}  // namespace refinery
