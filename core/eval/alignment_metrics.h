// Evaluation metrics of image-text alignment (METHOD.md "Metrics"), on
// L2-normalised embeddings; the function normalises raw features itself.
//   image_features [N, D], text_features [M, D], text_image[m] = index of text
//   m's image (several texts may share an image; an image may have none).
// Keys of the result:
//   modality_gap     mean over D of (c_img - c_txt)^2, c = centroid of the normalised embeddings
//   modality_gap_l2  ||c_img - c_txt||
//   alignment        mean over texts m of ||x_img(m) - y_m||^2
//   uniformity       log mean_{u != v} exp(-2 ||u - v||^2) over the N + M embeddings together
//   t2i_r1/5/10      text -> image: a hit if the text's image is in the top k of the N images
//   i2t_r1/5/10      image -> text: a hit if any of the image's texts is in the top k of the
//                    M texts; images with no text are left out
// Ties count in the query's favour (rank = number of strictly better candidates).
// Similarities run in float32 on the features' device, chunk_rows query rows at
// a time (no (N+M)^2 matrix at once); sums accumulate in double.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace refinery {

struct AlignmentMetricsOptions {
  // Query rows per similarity block; a block also stays under 4M entries, so
  // memory is bounded whatever N and M are.
  int64_t chunk_rows = 512;
};

// INVALID_ARGUMENT for shape mismatches (naming both shapes), an empty side,
// or a text_image entry out of range (naming the text index and the value).
std::map<std::string, double> alignment_metrics(const at::Tensor& image_features, const at::Tensor& text_features,
                                                const std::vector<int64_t>& text_image,
                                                const AlignmentMetricsOptions& options = {});

}  // namespace refinery
