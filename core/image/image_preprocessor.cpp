#include "core/image/image_preprocessor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/base/error.h"
#include "core/base/simd_clones.h"

// The coefficients must be computed with exactly Pillow's double arithmetic:
// no fused multiply-add contraction. GCC does not contract in ISO C++ mode
// (-std=c++17, as the build uses); clang is told here.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace refinery {

namespace {

// ------------------------------------------------------------------------
// Pillow's bicubic resampler (src/libImaging/Resample.c, 8 bits per channel).

// 8 bits for the result; the filter has negative lobes, so two extra bits of
// headroom, and a sign bit.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kBicubicSupport = 2.0;

inline double bicubic_filter(double x) {
  // https://en.wikipedia.org/wiki/Bicubic_interpolation#Bicubic_convolution_algorithm, a = -0.5
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Pillow's clip8: the accumulator holds the value << kPrecisionBits (plus
// the rounding half); the arithmetic shift floors.
inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// The vertical pass's row loops, with an AVX2 clone (core/base/simd_clones.h):
// baseline x86-64 (SSE2) has no 32-bit lane multiply and emulates it with
// two 64-bit ones and shuffles. The vertical pass was the largest cost of a
// call beside the forward pass in refineryd's profile (a 16x16 PNG upscaled
// to 224: 4.6% of the server's CPU under 32 callers, 2.2% with the clone).

// acc[j] += in[j] * k, j < n (integer sums: the order of the taps does not
// change the result).
REFINERY_SIMD_CLONES
void accumulate_row(int32_t* __restrict acc, const uint8_t* __restrict in, size_t n, int32_t k) {
  for (size_t j = 0; j < n; ++j) acc[j] += in[j] * k;
}

REFINERY_SIMD_CLONES
void clip_row(const int32_t* __restrict acc, uint8_t* __restrict out, size_t n) {
  for (size_t j = 0; j < n; ++j) out[j] = clip8(acc[j]);
}

// Fixed-point filter taps for the output indices [first, first + n) of an
// in_size -> out_size resample: precompute_coeffs followed by
// normalize_coeffs_8bpc. Output index `first + i` reads `count[i]` input
// samples from `start[i]` with weights k[i * ksize ...].
struct Taps {
  int ksize = 0;
  std::vector<int> start;
  std::vector<int> count;
  std::vector<int32_t> k;
};

Taps bicubic_taps(int in_size, int out_size, int first, int n) {
  Taps t;
  // Pillow: scale = (double)(in1 - in0) / outSize with a float box (0, in_size):
  // exact for any size we accept.
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kBicubicSupport * filterscale;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(n);
  t.count.resize(n);
  t.k.assign(static_cast<size_t>(n) * t.ksize, 0);
  std::vector<double> w(t.ksize);
  const double ss = 1.0 / filterscale;
  for (int i = 0; i < n; ++i) {
    const int xx = first + i;
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as Pillow's "rounding"
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double v = bicubic_filter((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    int32_t* k = &t.k[static_cast<size_t>(i) * t.ksize];
    for (int x = 0; x < xmax; ++x) {
      double v = w[x];
      if (ww != 0.0) v /= ww;
      // normalize_coeffs_8bpc: round half away from zero.
      k[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                   : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    t.start[i] = xmin;
    t.count[i] = xmax;
  }
  return t;
}

// ------------------------------------------------------------------------
// Pillow's premultiplication round trip (Convert.c: rgbA2rgba / lA2la and
// rgba2rgbA / la2lA).

inline uint8_t muldiv255(unsigned a, unsigned b) {
  const unsigned tmp = a * b + 128;
  return static_cast<uint8_t>(((tmp >> 8) + tmp) >> 8);
}

inline uint8_t unpremultiply(unsigned v, unsigned alpha) {
  if (alpha == 255 || alpha == 0) return static_cast<uint8_t>(v);
  const unsigned r = (255 * v) / alpha;
  return static_cast<uint8_t>(r > 255 ? 255 : r);
}

// `n` pixels of C = 2 (LA) or 4 (RGBA) channels, colour premultiplied by alpha.
template <int C>
void premultiply_row(const uint8_t* s, int n, uint8_t* d) {
  for (int x = 0; x < n; ++x, s += C, d += C) {
    const unsigned alpha = s[C - 1];
    for (int c = 0; c < C - 1; ++c) d[c] = muldiv255(s[c], alpha);
    d[C - 1] = static_cast<uint8_t>(alpha);
  }
}

// A window [x0, x0 + w) x [y0, y0 + h) of the out_w x out_h resize of a
// src_w x src_h image, and the source box [sx0, sx1) x [sy0, sy1) it reads.
struct BicubicPlan {
  int rw = 0, rh = 0;
  bool need_h = false, need_v = false;
  Taps th, tv;
  int sx0 = 0, sx1 = 0, sy0 = 0, sy1 = 0;
};

BicubicPlan plan_bicubic(int src_w, int src_h, int out_w, int out_h, int x0, int y0, int w, int h) {
  BicubicPlan p;
  p.rw = w;
  p.rh = h;
  // Pillow skips a pass when that dimension is unchanged (the box is always
  // the whole image here).
  p.need_h = out_w != src_w;
  p.need_v = out_h != src_h;
  if (p.need_h) {
    p.th = bicubic_taps(src_w, out_w, x0, w);
    p.sx0 = src_w;
    p.sx1 = 0;
    for (int i = 0; i < w; ++i) {
      p.sx0 = std::min(p.sx0, p.th.start[i]);
      p.sx1 = std::max(p.sx1, p.th.start[i] + p.th.count[i]);
    }
    for (int i = 0; i < w; ++i) p.th.start[i] -= p.sx0;
  } else {
    p.sx0 = x0;
    p.sx1 = x0 + w;
  }
  if (p.need_v) {
    p.tv = bicubic_taps(src_h, out_h, y0, h);
    p.sy0 = src_h;
    p.sy1 = 0;
    for (int i = 0; i < h; ++i) {
      p.sy0 = std::min(p.sy0, p.tv.start[i]);
      p.sy1 = std::max(p.sy1, p.tv.start[i] + p.tv.count[i]);
    }
    for (int i = 0; i < h; ++i) p.tv.start[i] -= p.sy0;
  } else {
    p.sy0 = y0;
    p.sy1 = y0 + h;
  }
  return p;
}

// Runs a plan. `box` points at source pixel (sx0, sy0), rows `box_stride`
// bytes apart; writes rh rows of rw * C bytes to `dst`. With Premul, the
// source is premultiplied by alpha (the last channel) as it is read.
template <int C, bool Premul>
void run_bicubic(const BicubicPlan& p, const uint8_t* box, size_t box_stride, uint8_t* dst) {
  const int rows = p.sy1 - p.sy0;
  const size_t row_bytes = static_cast<size_t>(p.rw) * C;
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

  // Horizontal pass over every source row the vertical pass reads; 8-bit
  // results, as Pillow's intermediate image.
  std::vector<uint8_t> temp;
  const uint8_t* mid = box;
  size_t mid_stride = box_stride;
  if (p.need_h) {
    temp.resize(static_cast<size_t>(rows) * row_bytes);
    const int ksize = p.th.ksize;
    std::vector<uint8_t> premultiplied(Premul ? static_cast<size_t>(p.sx1 - p.sx0) * C : 0);
    for (int y = 0; y < rows; ++y) {
      const uint8_t* in = box + static_cast<size_t>(y) * box_stride;
      if (Premul) {
        premultiply_row<C>(in, p.sx1 - p.sx0, premultiplied.data());
        in = premultiplied.data();
      }
      uint8_t* out = temp.data() + static_cast<size_t>(y) * row_bytes;
      for (int i = 0; i < p.rw; ++i) {
        const int32_t* k = &p.th.k[static_cast<size_t>(i) * ksize];
        const uint8_t* s = in + static_cast<size_t>(p.th.start[i]) * C;
        const int n = p.th.count[i];
        int32_t acc[C];
        for (int c = 0; c < C; ++c) acc[c] = kHalf;
        for (int x = 0; x < n; ++x, s += C) {
          for (int c = 0; c < C; ++c) acc[c] += s[c] * k[x];
        }
        for (int c = 0; c < C; ++c) out[i * C + c] = clip8(acc[c]);
      }
    }
    mid = temp.data();
    mid_stride = row_bytes;
  } else if (Premul) {
    temp.resize(static_cast<size_t>(rows) * row_bytes);
    for (int y = 0; y < rows; ++y) {
      premultiply_row<C>(box + static_cast<size_t>(y) * box_stride, p.rw,
                         temp.data() + static_cast<size_t>(y) * row_bytes);
    }
    mid = temp.data();
    mid_stride = row_bytes;
  }

  if (!p.need_v) {
    for (int y = 0; y < p.rh; ++y) {
      std::memcpy(dst + static_cast<size_t>(y) * row_bytes, mid + static_cast<size_t>(y) * mid_stride, row_bytes);
    }
    return;
  }
  // Vertical pass, a row at a time.
  std::vector<int32_t> acc(row_bytes);
  const int ksize = p.tv.ksize;
  for (int y = 0; y < p.rh; ++y) {
    const int32_t* k = &p.tv.k[static_cast<size_t>(y) * ksize];
    const int n = p.tv.count[y];
    const uint8_t* in = mid + static_cast<size_t>(p.tv.start[y]) * mid_stride;
    std::fill(acc.begin(), acc.end(), kHalf);
    for (int t = 0; t < n; ++t, in += mid_stride) accumulate_row(acc.data(), in, row_bytes, k[t]);
    clip_row(acc.data(), dst + static_cast<size_t>(y) * row_bytes, row_bytes);
  }
}

void run_bicubic(int channels, bool premultiply, const BicubicPlan& p, const uint8_t* box, size_t box_stride,
                 uint8_t* dst) {
  if (premultiply) {
    switch (channels) {
      case 2: run_bicubic<2, true>(p, box, box_stride, dst); return;
      case 4: run_bicubic<4, true>(p, box, box_stride, dst); return;
      default: break;
    }
  } else {
    switch (channels) {
      case 1: run_bicubic<1, false>(p, box, box_stride, dst); return;
      case 2: run_bicubic<2, false>(p, box, box_stride, dst); return;
      case 3: run_bicubic<3, false>(p, box, box_stride, dst); return;
      case 4: run_bicubic<4, false>(p, box, box_stride, dst); return;
      default: break;
    }
  }
  throw internal_error("bicubic resize: " + std::to_string(channels) + " channels" +
                       (premultiply ? " premultiplied" : ""));
}

// ------------------------------------------------------------------------
// Pillow's NEAREST resize (ImagingScaleAffine with a = (w / out_w, 0, 0, 0,
// h / out_h, 0)): positions accumulated in double from (0.5 * a), floored.

std::vector<int> nearest_table(int in_size, int out_size) {
  std::vector<int> tab(out_size);
  const double a = static_cast<double>(in_size) / out_size;
  double xo = 0.0 + a * 0.5;
  for (int x = 0; x < out_size; ++x) {
    const int xin = xo < 0.0 ? -1 : static_cast<int>(xo);
    // Pillow leaves pixels that map outside the source black; with these
    // scales they never do, clamping is only a guard.
    tab[x] = std::min(std::max(xin, 0), in_size - 1);
    xo += a;
  }
  return tab;
}

// Window [x0, x0 + w) x [y0, y0 + h) of the nearest resize to out_w x out_h.
void nearest_window(const uint8_t* src, int src_w, int src_h, int channels, int out_w, int out_h, int x0, int y0,
                    int w, int h, uint8_t* dst) {
  const size_t src_stride = static_cast<size_t>(src_w) * channels;
  if (out_w == src_w && out_h == src_h) {
    for (int y = 0; y < h; ++y) {
      std::memcpy(dst + static_cast<size_t>(y) * w * channels,
                  src + static_cast<size_t>(y0 + y) * src_stride + static_cast<size_t>(x0) * channels,
                  static_cast<size_t>(w) * channels);
    }
    return;
  }
  const std::vector<int> xt = nearest_table(src_w, out_w);
  const std::vector<int> yt = nearest_table(src_h, out_h);
  for (int y = 0; y < h; ++y) {
    const uint8_t* in = src + static_cast<size_t>(yt[y0 + y]) * src_stride;
    uint8_t* out = dst + static_cast<size_t>(y) * w * channels;
    for (int x = 0; x < w; ++x) {
      const uint8_t* s = in + static_cast<size_t>(xt[x0 + x]) * channels;
      for (int c = 0; c < channels; ++c) *out++ = s[c];
    }
  }
}

void check_resize_args(const uint8_t* src, int w, int h, int channels, int out_w, int out_h) {
  if (src == nullptr || w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0 || channels < 1 || channels > 4) {
    throw invalid_argument("resize: bad arguments (" + std::to_string(w) + "x" + std::to_string(h) + "x" +
                           std::to_string(channels) + " -> " + std::to_string(out_w) + "x" +
                           std::to_string(out_h) + ")");
  }
}

}  // namespace

// ------------------------------------------------------------------------

void clip_resize_size(int width, int height, int size, int* out_width, int* out_height) {
  // torchvision _compute_resized_output_size: new_long = int(size * long / short)
  // (Python true division, a double, truncated).
  const int short_side = std::min(width, height);
  const int long_side = std::max(width, height);
  const int new_long =
      static_cast<int>(static_cast<double>(static_cast<int64_t>(size) * long_side) / short_side);
  if (width <= height) {
    *out_width = size;
    *out_height = new_long;
  } else {
    *out_width = new_long;
    *out_height = size;
  }
}

int clip_center_crop_offset(int in, int crop) {
  // int(round((in - crop) / 2.0)): the halves of odd differences round to even.
  const int d = in - crop;
  if (d % 2 == 0) return d / 2;
  const int lo = (d - 1) / 2;  // d >= 1 here (the resized image is never smaller than the crop)
  return lo % 2 == 0 ? lo : lo + 1;
}

std::vector<uint8_t> resize_bicubic_pillow(const uint8_t* src, int w, int h, int channels, int out_w,
                                           int out_h) {
  check_resize_args(src, w, h, channels, out_w, out_h);
  const BicubicPlan p = plan_bicubic(w, h, out_w, out_h, 0, 0, out_w, out_h);
  std::vector<uint8_t> out(static_cast<size_t>(out_w) * out_h * channels);
  const size_t stride = static_cast<size_t>(w) * channels;
  run_bicubic(channels, false, p,
              src + static_cast<size_t>(p.sy0) * stride + static_cast<size_t>(p.sx0) * channels, stride,
              out.data());
  return out;
}

std::vector<uint8_t> resize_nearest_pillow(const uint8_t* src, int w, int h, int channels, int out_w,
                                           int out_h) {
  check_resize_args(src, w, h, channels, out_w, out_h);
  std::vector<uint8_t> out(static_cast<size_t>(out_w) * out_h * channels);
  nearest_window(src, w, h, channels, out_w, out_h, 0, 0, out_w, out_h, out.data());
  return out;
}

ImagePreprocessor::ImagePreprocessor(ImagePreprocessorOptions o) : options_(o) {
  if (o.size < 1 || o.size > kMaxImageSide) {
    throw invalid_argument("image preprocessor: size " + std::to_string(o.size) + " is outside [1, " +
                           std::to_string(kMaxImageSide) + "]");
  }
  for (int c = 0; c < 3; ++c) {
    if (!(o.std[c] > 0.0f) || !std::isfinite(o.std[c]) || !std::isfinite(o.mean[c])) {
      throw invalid_argument("image preprocessor: mean and std must be finite and std positive");
    }
    for (int v = 0; v < 256; ++v) {
      // torchvision: ToTensor divides the float32 tensor by 255, Normalize
      // subtracts and divides by float32 mean and std.
      const float x = static_cast<float>(v) / 255.0f;
      lut_[c][v] = (x - o.mean[c]) / o.std[c];
    }
  }
}

std::vector<float> ImagePreprocessor::preprocess(const DecodedImage& img) const {
  std::vector<float> out(static_cast<size_t>(3) * options_.size * options_.size);
  preprocess(img, out.data());
  return out;
}

void ImagePreprocessor::preprocess(const DecodedImage& img, float* out) const {
  if (img.width <= 0 || img.height <= 0 || img.width > kMaxImageSide || img.height > kMaxImageSide ||
      img.channels != pil_mode_channels(img.mode) ||
      img.pixels.size() != static_cast<size_t>(img.width) * img.height * img.channels) {
    throw invalid_argument("image preprocessor: inconsistent image (" + std::to_string(img.width) + "x" +
                           std::to_string(img.height) + ", mode " + pil_mode_name(img.mode) + ", " +
                           std::to_string(img.channels) + " channels, " + std::to_string(img.pixels.size()) +
                           " bytes)");
  }
  const int n = options_.size;
  int ow = 0, oh = 0;
  clip_resize_size(img.width, img.height, n, &ow, &oh);
  const int left = clip_center_crop_offset(ow, n);
  const int top = clip_center_crop_offset(oh, n);
  const int C = img.channels;
  const bool resized = ow != img.width || oh != img.height;
  const size_t plane = static_cast<size_t>(n) * n;

  // The crop window of the resized image, still in the original mode.
  std::vector<uint8_t> win(plane * C);
  switch (img.mode) {
    case PilMode::k1:
    case PilMode::kP:
      nearest_window(img.pixels.data(), img.width, img.height, C, ow, oh, left, top, n, n, win.data());
      break;
    case PilMode::kL:
    case PilMode::kRGB:
    case PilMode::kLA:
    case PilMode::kRGBA: {
      // Image.resize to the same size is a plain copy: in particular, no
      // premultiplication round trip.
      const bool premultiplied = resized && (img.mode == PilMode::kLA || img.mode == PilMode::kRGBA);
      const BicubicPlan p = plan_bicubic(img.width, img.height, ow, oh, left, top, n, n);
      const size_t stride = static_cast<size_t>(img.width) * C;
      run_bicubic(C, premultiplied, p,
                  img.pixels.data() + static_cast<size_t>(p.sy0) * stride + static_cast<size_t>(p.sx0) * C, stride,
                  win.data());
      if (!premultiplied) break;
      // Back to straight alpha (convert("RGBA") / convert("LA")).
      for (size_t i = 0; i < plane; ++i) {
        uint8_t* px = &win[i * C];
        const unsigned alpha = px[C - 1];
        for (int c = 0; c < C - 1; ++c) px[c] = unpremultiply(px[c], alpha);
      }
      break;
    }
  }

  // convert("RGB") (grey replicated, alpha dropped), ToTensor, Normalize.
  float* r = out;
  float* g = out + plane;
  float* b = out + 2 * plane;
  const auto& l0 = lut_[0];
  const auto& l1 = lut_[1];
  const auto& l2 = lut_[2];
  if (C <= 2) {  // 1, L, LA: the grey level, alpha (if any) dropped
    for (size_t i = 0; i < plane; ++i) {
      const uint8_t v = win[i * C];
      r[i] = l0[v];
      g[i] = l1[v];
      b[i] = l2[v];
    }
  } else {  // P (expanded), RGB, RGBA
    for (size_t i = 0; i < plane; ++i) {
      const uint8_t* px = &win[i * C];
      r[i] = l0[px[0]];
      g[i] = l1[px[1]];
      b[i] = l2[px[2]];
    }
  }
}

}  // namespace refinery
