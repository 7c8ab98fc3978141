// Image decoding for the CLIP image front end: bytes (JPEG, PNG, WebP, BMP,
// TIFF) -> 8-bit interleaved pixels in RGB channel order, plus the mode that
// PIL would have given the file. The mode matters because the reference
// pipeline resizes *before* converting to RGB, and Pillow's resize depends on
// the mode (nearest for "P"/"1", premultiplied for "RGBA"/"LA"); see
// image_preprocessor.h.
//
// Decoding uses OpenCV (core + imgcodecs only) with IMREAD_UNCHANGED, which
// never applies EXIF orientation, like PIL.Image.open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace refinery {

// The PIL modes the preprocessor distinguishes.
enum class PilMode {
  k1,     // 1-bit; stored expanded to 0/255, one channel. Resized with NEAREST.
  kL,     // greyscale, one channel.
  kP,     // palette; stored as its expanded RGB colours (3 channels). Resized with NEAREST.
  kLA,    // greyscale + alpha, two channels. Resized premultiplied.
  kRGB,   // three channels.
  kRGBA,  // four channels. Resized premultiplied.
};

const char* pil_mode_name(PilMode mode);  // "1", "L", "P", "LA", "RGB", "RGBA"
int pil_mode_channels(PilMode mode);      // channels DecodedImage stores for the mode

// Largest accepted width or height. Bigger files are rejected before the
// pixels are decoded where the header says the size (PNG, JPEG, BMP, WebP,
// TIFF), and after decoding otherwise.
constexpr int kMaxImageSide = 16384;

// Largest accepted width x height, checked like kMaxImageSide: from the
// header, before a pixel is decoded. A side limit alone lets a 4 MB file
// declare 16384 x 16384 pixels (1 to 3 GB and tens of seconds to decode).
// One limit for the process, set by its operator (refineryd and
// refinery-model --max-image-pixels); 40 MP by default, which passes a
// 7000 x 5700 photo.
constexpr int64_t kDefaultMaxImagePixels = 40'000'000;
void set_max_image_pixels(int64_t pixels);  // INVALID_ARGUMENT unless >= 1
int64_t max_image_pixels();

// The most memory decoding an image of `pixels` pixels takes: the decoder's
// buffer at up to 16 bits x 4 channels (8 bytes a pixel) plus the 8-bit
// result (up to 4). The preprocessor's buffers are smaller than either.
constexpr int64_t kDecodeBytesPerPixel = 12;
inline int64_t decode_memory_for_pixels(int64_t pixels) { return pixels * kDecodeBytesPerPixel; }

// decode_memory_for_pixels of the size the image's header states, read
// without decoding (max_image_pixels() where the header does not say).
// Throws what decode_image would for empty data, an unrecognised format or a
// size over the limits.
int64_t decode_memory_bound(const uint8_t* data, size_t size, const std::string& name);

struct DecodedImage {
  int width = 0;
  int height = 0;
  PilMode mode = PilMode::kRGB;
  int channels = 0;             // == pil_mode_channels(mode)
  std::vector<uint8_t> pixels;  // height * width * channels, rows top to bottom, interleaved
};

// Decodes an image from memory. `name` (a file name, a request field...) is
// only used in error messages. Throws refinery::Error (kInvalidArgument)
// naming `name` and the reason for empty data, an unrecognised format,
// truncated or corrupt data, zero or over-large (> kMaxImageSide per side,
// > max_image_pixels() in all) dimensions,
// and sample formats other than 8/16-bit integers.
//
// 16-bit images are reduced to 8 bits by taking the high byte. (PIL keeps a
// 16-bit greyscale PNG as mode "I;16" and its convert("RGB") *clamps* values
// to 255 instead; we deliberately do not copy that: it turns nearly every such
// image white.) CMYK JPEGs come out as OpenCV converts them to RGB, which is
// not PIL's CMYK->RGB conversion.
DecodedImage decode_image(const uint8_t* data, size_t size, const std::string& name);

// Reads and decodes a file; errors name `path`.
DecodedImage decode_image_file(const std::string& path);

// A cheap check that a file is there, readable and starts like an image the
// decoder handles (its first bytes only; the pixels are not decoded), for
// validating a data set before work starts. Throws what decode_image_file
// would for a missing or unreadable file or an unrecognised format.
void check_image_file_header(const std::string& path);

}  // namespace refinery
