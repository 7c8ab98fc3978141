// Labelled image sets for zero-shot classification, named by a SPEC string:
//
//   folder:DIR   one sub-folder per class (torchvision's ImageFolder layout):
//                classes are the sub-folders in byte order, their images
//                every file below them with an image extension (.jpg .jpeg
//                .png .ppm .pgm .bmp .tif .tiff .webp, any case), in path
//                order. A class folder without images is an error.
//   csv:FILE     a header row naming the columns `filepath` and `label`
//                (others ignored), RFC 4180 quoting, paths relative to FILE's
//                folder. When every label is a non-negative integer the
//                labels are class ids (0..max; ids without images are
//                classes all the same); otherwise each distinct label is a
//                class, in byte order.
//
// A class's key is its folder name or label; its display name is made from
// it by the evaluation (zeroshot_classes.h). Image paths come out absolute
// and lexically normalised. Paths are on the machine that runs the work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/base/path_roots.h"

namespace refinery {

struct LabeledImage {
  std::string image_path;  // absolute, lexically normalised
  int64_t label = 0;       // class id, an index into ClassDataset::class_keys
};

struct ClassDataset {
  std::string spec;                     // as given
  std::vector<std::string> class_keys;  // by class id: folder names or labels
  bool numeric_labels = false;          // csv with integer labels: the keys are "0", "1", ...
  std::vector<LabeledImage> items;
  std::vector<int64_t> class_counts() const;  // images per class id
};

struct ClassDatasetOptions {
  bool check_images = true;         // each image file: there, readable, starts like an image
  size_t max_offenders_listed = 5;  // how many bad files / empty classes a message names
  // The folder or file is checked before it is read, and every image path
  // (a class folder may hold symlinks) before it is looked at.
  const PathRoots* roots = nullptr;
};

// The spec schemes understood: "folder", "csv".
const std::vector<std::string>& class_dataset_schemes();

// Throws refinery::Error (kInvalidArgument) whose message names the
// offenders: an unknown scheme (listing the schemes), a missing folder or
// file, a class folder without images (which), a data set without images,
// CSV errors (line and column), and image files that are missing, unreadable
// or not images (how many, the first few and why).
ClassDataset load_class_dataset(const std::string& spec, const ClassDatasetOptions& options = {});

// Checks every path with check_image_file_header; throws INVALID_ARGUMENT
// "<what>: N unreadable images: path (why), ..." naming the first few.
void check_image_files(const std::vector<std::string>& paths, const std::string& what, size_t max_listed = 5);

}  // namespace refinery
