// CLIP image preprocessing, bit-exact with OpenAI CLIP's `_transform(n_px)`:
//
//   Resize(n_px, BICUBIC)   torchvision on a PIL image: shorter side -> n_px,
//                           longer side int(n_px * long / short), by Pillow's
//                           Image.resize (Pillow 9.4 semantics, see below)
//   CenterCrop(n_px)        top = int(round((h - n_px) / 2.0)), round half even
//   convert("RGB")          after the resize and crop, in the original mode
//   ToTensor, Normalize     x / 255, then (x - mean) / std, in float32
//
// Pillow's resize depends on the image mode: "P" and "1" are resized with
// NEAREST whatever filter is asked; "RGBA" and "LA" are premultiplied by
// alpha (fixed-point MULDIV255), resized, and un-premultiplied (truncating
// division), so fully transparent pixels come out black after convert("RGB");
// "L" is resized as one channel; everything else channel by channel. The
// bicubic resampler is Pillow's two-pass fixed-point one (Resample.c): a =
// -0.5, support widened by the downscale factor, 22-bit coefficients,
// horizontal pass first, rows stored as 8 bits between the passes, a pass
// skipped when its dimension does not change.
//
// Only the part of the resized image that the crop keeps is computed: each
// output pixel of each pass depends only on its own (identically computed)
// coefficients, so this is bit-identical to resizing everything and cropping.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/image/image_decoder.h"

namespace refinery {

struct ImagePreprocessorOptions {
  int size = 224;  // n_px: the resize target of the shorter side and the crop size
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
};

class ImagePreprocessor {
 public:
  // Throws refinery::Error (kInvalidArgument) for a size outside
  // [1, kMaxImageSide] or a non-positive std.
  explicit ImagePreprocessor(ImagePreprocessorOptions o = {});

  // Writes 3 * size * size floats to `out`: channel-major (CHW), R, G, B,
  // normalised. Throws refinery::Error (kInvalidArgument) for an image whose
  // fields are inconsistent (sizes, channels vs mode, pixel count).
  void preprocess(const DecodedImage& img, float* out) const;
  std::vector<float> preprocess(const DecodedImage& img) const;

  const ImagePreprocessorOptions& options() const { return options_; }

 private:
  ImagePreprocessorOptions options_;
  // lut_[c][v] = (v / 255.f - mean[c]) / std[c], exactly as torch computes it.
  std::array<std::array<float, 256>, 3> lut_;
};

// The torchvision Resize(int) output size for a width x height image:
// shorter side -> size, longer side int(size * long / short).
void clip_resize_size(int width, int height, int size, int* out_width, int* out_height);

// torchvision's center-crop offset: int(round((in - crop) / 2.0)), round half
// to even as Python's round.
int clip_center_crop_offset(int in, int crop);

// Pillow's Image.resize(..., BICUBIC) of an 8-bit interleaved image with
// `channels` channels (1 to 4), each channel independently (no
// premultiplication: that is the caller's business, see above). Returns
// out_h * out_w * channels bytes. Same size: a copy.
std::vector<uint8_t> resize_bicubic_pillow(const uint8_t* src, int w, int h, int channels, int out_w,
                                           int out_h);

// Pillow's Image.resize(..., NEAREST): source pixel floor((x + 0.5) * w /
// out_w), with Pillow's incremental double arithmetic.
std::vector<uint8_t> resize_nearest_pillow(const uint8_t* src, int w, int h, int channels, int out_w,
                                           int out_h);

}  // namespace refinery
