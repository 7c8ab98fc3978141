#include "core/image/image_decoder.h"

#include <atomic>

#include <algorithm>
#include <climits>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/base/error.h"

namespace refinery {

const char* pil_mode_name(PilMode mode) {
  switch (mode) {
    case PilMode::k1: return "1";
    case PilMode::kL: return "L";
    case PilMode::kP: return "P";
    case PilMode::kLA: return "LA";
    case PilMode::kRGB: return "RGB";
    case PilMode::kRGBA: return "RGBA";
  }
  return "?";
}

int pil_mode_channels(PilMode mode) {
  switch (mode) {
    case PilMode::k1:
    case PilMode::kL: return 1;
    case PilMode::kLA: return 2;
    case PilMode::kP:
    case PilMode::kRGB: return 3;
    case PilMode::kRGBA: return 4;
  }
  return 0;
}

namespace {

enum class Format { kJpeg, kPng, kWebp, kBmp, kTiff };

const char* format_name(Format f) {
  switch (f) {
    case Format::kJpeg: return "JPEG";
    case Format::kPng: return "PNG";
    case Format::kWebp: return "WebP";
    case Format::kBmp: return "BMP";
    case Format::kTiff: return "TIFF";
  }
  return "?";
}

// What the file's header says, read without decoding pixels.
struct HeaderInfo {
  Format format = Format::kPng;
  int64_t width = -1;  // -1: not known from the header
  int64_t height = -1;
  bool mode_known = false;
  PilMode mode = PilMode::kRGB;  // the mode PIL would give the file, when mode_known
  // PNG: where its iCCP chunk (an embedded colour profile) lies, whole; 0
  // bytes when it has none.
  size_t png_iccp_pos = 0;
  size_t png_iccp_bytes = 0;
};

class Bytes {
 public:
  Bytes(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  size_t size() const { return n_; }
  bool has(size_t pos, size_t len) const { return pos <= n_ && len <= n_ - pos; }
  uint8_t u8(size_t p) const { return d_[p]; }
  uint32_t be16(size_t p) const { return (uint32_t(d_[p]) << 8) | d_[p + 1]; }
  uint32_t be32(size_t p) const { return (be16(p) << 16) | be16(p + 2); }
  uint32_t le16(size_t p) const { return (uint32_t(d_[p + 1]) << 8) | d_[p]; }
  uint32_t le24(size_t p) const { return le16(p) | (uint32_t(d_[p + 2]) << 16); }
  uint32_t le32(size_t p) const { return le16(p) | (le16(p + 2) << 16); }
  const uint8_t* data() const { return d_; }

 private:
  const uint8_t* d_;
  size_t n_;
};

[[noreturn]] void fail(const std::string& name, const std::string& why) {
  throw invalid_argument("image '" + name + "': " + why);
}

// ---------------------------------------------------------------- PNG
// Walks the chunk list: a file that ends before IEND is truncated (libpng,
// through OpenCV, may otherwise hand back a partly decoded image).
void sniff_png(const Bytes& b, const std::string& name, HeaderInfo& info) {
  size_t pos = 8;
  bool first = true;
  for (;;) {
    if (!b.has(pos, 8)) fail(name, "truncated PNG data (no IEND chunk)");
    const uint32_t len = b.be32(pos);
    if (len > 0x7fffffffu) fail(name, "corrupt PNG data (bad chunk length)");
    const char* type = reinterpret_cast<const char*>(b.data() + pos + 4);
    if (!b.has(pos, size_t(12) + len)) fail(name, "truncated PNG data (no IEND chunk)");
    if (first) {
      if (std::memcmp(type, "IHDR", 4) != 0 || len < 13) fail(name, "corrupt PNG data (no IHDR)");
      const size_t p = pos + 8;
      info.width = b.be32(p);
      info.height = b.be32(p + 4);
      const int bit_depth = b.u8(p + 8);
      const int color_type = b.u8(p + 9);
      info.mode_known = true;
      switch (color_type) {
        case 0: info.mode = bit_depth == 1 ? PilMode::k1 : PilMode::kL; break;
        case 2: info.mode = PilMode::kRGB; break;
        case 3: info.mode = PilMode::kP; break;
        case 4: info.mode = PilMode::kLA; break;
        case 6: info.mode = PilMode::kRGBA; break;
        default: fail(name, "corrupt PNG data (colour type " + std::to_string(color_type) + ")");
      }
      first = false;
    }
    if (std::memcmp(type, "IEND", 4) == 0) return;
    if (std::memcmp(type, "iCCP", 4) == 0 && info.png_iccp_bytes == 0) {
      info.png_iccp_pos = pos;
      info.png_iccp_bytes = size_t(12) + len;
    }
    pos += size_t(12) + len;
  }
}

// ---------------------------------------------------------------- JPEG
// Walks the marker segments up to the first SOS (reading the frame size from
// SOF), then requires an EOI marker after it: entropy-coded data never
// contains FF D9, so a file cut short has none. (libjpeg, through OpenCV,
// pads a truncated file with grey and reports success.)
void sniff_jpeg(const Bytes& b, const std::string& name, HeaderInfo& info) {
  size_t pos = 2;
  bool have_sof = false;
  for (;;) {
    if (!b.has(pos, 1)) fail(name, "truncated JPEG data");
    if (b.u8(pos) != 0xFF) fail(name, "corrupt JPEG data (expected a marker)");
    while (b.has(pos, 1) && b.u8(pos) == 0xFF) ++pos;  // fill bytes
    if (!b.has(pos, 1)) fail(name, "truncated JPEG data");
    const uint8_t m = b.u8(pos++);
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // no length
    if (m == 0xD9) fail(name, "corrupt JPEG data (no image data before EOI)");
    if (!b.has(pos, 2)) fail(name, "truncated JPEG data");
    const uint32_t len = b.be16(pos);
    if (len < 2) fail(name, "corrupt JPEG data (bad segment length)");
    if (!b.has(pos, len)) fail(name, "truncated JPEG data");
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof && !have_sof) {
      if (len < 8) fail(name, "corrupt JPEG data (short SOF)");
      info.height = b.be16(pos + 3);
      info.width = b.be16(pos + 5);
      const int components = b.u8(pos + 7);
      // PIL: 1 component -> "L", 3 -> "RGB", 4 -> "CMYK" (which we cannot
      // reproduce; OpenCV's RGB conversion is used, mode from the channels).
      if (components == 1) {
        info.mode_known = true;
        info.mode = PilMode::kL;
      } else if (components == 3) {
        info.mode_known = true;
        info.mode = PilMode::kRGB;
      }
      have_sof = true;
    }
    pos += len;
    if (m == 0xDA) break;
  }
  if (!have_sof) fail(name, "corrupt JPEG data (no frame header)");
  for (size_t p = pos; p + 1 < b.size(); ++p) {
    if (b.u8(p) == 0xFF && b.u8(p + 1) == 0xD9) return;
  }
  fail(name, "truncated JPEG data (no EOI marker)");
}

// ---------------------------------------------------------------- BMP
// Mirrors PIL's BmpImagePlugin: palette images (<= 8 bits) are "P", unless
// the palette is the identity grey ramp ("L"), or, with 2 colours, black and
// white ("1"); 32-bit BITFIELDS images with an alpha mask are "RGBA".
void sniff_bmp(const Bytes& b, const std::string& name, HeaderInfo& info) {
  if (!b.has(0, 18)) fail(name, "truncated BMP data");
  const size_t offset = b.le32(10);
  const uint32_t header_size = b.le32(14);
  if (!b.has(14, header_size)) fail(name, "truncated BMP data");
  int64_t width = 0, height = 0;
  uint32_t bits = 0, compression = 0, colors = 0;
  size_t padding = 4;
  if (header_size == 12) {
    width = b.le16(18);
    height = b.le16(20);
    bits = b.le16(24);
    padding = 3;
  } else if (header_size == 40 || header_size == 64 || header_size == 108 || header_size == 124) {
    width = int32_t(b.le32(18));
    height = int32_t(b.le32(22));
    if (height < 0) height = -height;  // top-down rows
    bits = b.le16(28);
    compression = b.le32(30);
    colors = b.le32(46);
  } else {
    fail(name, "unsupported BMP header size " + std::to_string(header_size));
  }
  info.width = width;
  info.height = height;
  info.mode_known = true;
  if (bits <= 8) {
    if (bits == 0) fail(name, "corrupt BMP data (0 bits per pixel)");
    if (colors == 0) colors = 1u << bits;
    if (colors > 65536) fail(name, "corrupt BMP data (palette size)");
    const size_t pal = 14 + size_t(header_size);
    if (!b.has(pal, padding * colors)) fail(name, "truncated BMP data (palette)");
    bool grey = true;
    for (uint32_t i = 0; i < (colors == 2 ? 2u : colors) && grey; ++i) {
      const uint32_t val = colors == 2 ? (i == 0 ? 0u : 255u) : (i & 255u);
      const size_t p = pal + i * padding;
      grey = b.u8(p) == val && b.u8(p + 1) == val && b.u8(p + 2) == val;
    }
    info.mode = grey ? (colors == 2 ? PilMode::k1 : PilMode::kL) : PilMode::kP;
  } else {
    info.mode = PilMode::kRGB;
    if (bits == 32 && compression == 3 /* BITFIELDS */) {
      uint32_t r = 0, g = 0, bl = 0, a = 0;
      if (header_size >= 56 && b.has(54, 16)) {
        r = b.le32(54), g = b.le32(58), bl = b.le32(62), a = b.le32(66);
      } else if (b.has(54, 12)) {
        r = b.le32(54), g = b.le32(58), bl = b.le32(62);
      }
      const bool alpha = (r == 0xFF000000u && g == 0xFF0000u && bl == 0xFF00u && a == 0xFFu) ||
                         (r == 0xFFu && g == 0xFF00u && bl == 0xFF0000u && a == 0xFF000000u) ||
                         (r == 0xFF0000u && g == 0xFF00u && bl == 0xFFu && a == 0xFF000000u) ||
                         (r == 0 && g == 0 && bl == 0 && a == 0);
      if (alpha) info.mode = PilMode::kRGBA;
    }
  }
  // Uncompressed pixel data must all be there.
  if ((compression == 0 || compression == 3) && width > 0 && height > 0 && width <= kMaxImageSide &&
      height <= kMaxImageSide) {
    const uint64_t stride = ((uint64_t(width) * bits + 31) >> 3) & ~uint64_t(3);
    if (offset > b.size() || stride * uint64_t(height) > b.size() - offset) {
      fail(name, "truncated BMP data");
    }
  }
}

// ---------------------------------------------------------------- WebP
void sniff_webp(const Bytes& b, const std::string& name, HeaderInfo& info) {
  const uint64_t riff_size = uint64_t(b.le32(4)) + 8;
  if (riff_size > b.size()) fail(name, "truncated WebP data");
  if (!b.has(12, 8)) fail(name, "truncated WebP data");
  const char* fourcc = reinterpret_cast<const char*>(b.data() + 12);
  if (std::memcmp(fourcc, "VP8X", 4) == 0 && b.has(24, 6)) {
    info.width = int64_t(b.le24(24)) + 1;
    info.height = int64_t(b.le24(27)) + 1;
  } else if (std::memcmp(fourcc, "VP8 ", 4) == 0 && b.has(20, 10)) {
    info.width = b.le16(26) & 0x3FFF;
    info.height = b.le16(28) & 0x3FFF;
  } else if (std::memcmp(fourcc, "VP8L", 4) == 0 && b.has(20, 5)) {
    const uint32_t v = b.le32(21);
    info.width = int64_t(v & 0x3FFF) + 1;
    info.height = int64_t((v >> 14) & 0x3FFF) + 1;
  }
  // Mode (RGB or RGBA) from the decoded channels, as PIL's has-alpha test.
}

// ---------------------------------------------------------------- TIFF
// Reads the first IFD for the size and for the modes that change how PIL
// resizes: palette ("P") and bilevel ("1"). Other modes come from the
// decoded channels.
void sniff_tiff(const Bytes& b, const std::string& name, HeaderInfo& info) {
  const bool le = b.u8(0) == 'I';
  auto u16 = [&](size_t p) { return le ? b.le16(p) : b.be16(p); };
  auto u32 = [&](size_t p) { return le ? b.le32(p) : b.be32(p); };
  const size_t ifd = u32(4);
  if (!b.has(ifd, 2)) fail(name, "truncated TIFF data");
  const size_t count = u16(ifd);
  if (!b.has(ifd + 2, count * 12)) fail(name, "truncated TIFF data");
  int64_t photometric = -1, bits = -1, samples = 1;
  for (size_t i = 0; i < count; ++i) {
    const size_t e = ifd + 2 + i * 12;
    const uint32_t tag = u16(e), type = u16(e + 2), n = u32(e + 4);
    auto value = [&]() -> int64_t {  // first value of a SHORT or LONG entry
      if (type == 3) {
        if (n <= 2) return u16(e + 8);
        const size_t off = u32(e + 8);
        return b.has(off, 2) ? int64_t(u16(off)) : -1;
      }
      if (type == 4) {
        if (n <= 1) return u32(e + 8);
        const size_t off = u32(e + 8);
        return b.has(off, 4) ? int64_t(u32(off)) : -1;
      }
      return -1;
    };
    switch (tag) {
      case 256: info.width = value(); break;
      case 257: info.height = value(); break;
      case 258: bits = value(); break;
      case 262: photometric = value(); break;
      case 277: samples = value(); break;
      default: break;
    }
  }
  if (photometric == 3) {
    info.mode_known = true;
    info.mode = PilMode::kP;
  } else if ((photometric == 0 || photometric == 1) && bits == 1 && samples == 1) {
    info.mode_known = true;
    info.mode = PilMode::k1;
  }
}

HeaderInfo sniff(const Bytes& b, const std::string& name) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  HeaderInfo info;
  if (b.has(0, 3) && b.u8(0) == 0xFF && b.u8(1) == 0xD8 && b.u8(2) == 0xFF) {
    info.format = Format::kJpeg;
    sniff_jpeg(b, name, info);
  } else if (b.has(0, 8) && std::memcmp(b.data(), kPng, 8) == 0) {
    info.format = Format::kPng;
    sniff_png(b, name, info);
  } else if (b.has(0, 12) && std::memcmp(b.data(), "RIFF", 4) == 0 &&
             std::memcmp(b.data() + 8, "WEBP", 4) == 0) {
    info.format = Format::kWebp;
    sniff_webp(b, name, info);
  } else if (b.has(0, 2) && b.u8(0) == 'B' && b.u8(1) == 'M') {
    info.format = Format::kBmp;
    sniff_bmp(b, name, info);
  } else if (b.has(0, 8) && (std::memcmp(b.data(), "II*\0", 4) == 0 ||
                             std::memcmp(b.data(), "MM\0*", 4) == 0)) {
    info.format = Format::kTiff;
    sniff_tiff(b, name, info);
  } else {
    fail(name, "not a recognised image format (expected JPEG, PNG, WebP, BMP or TIFF)");
  }
  return info;
}

std::atomic<int64_t> g_max_image_pixels{kDefaultMaxImagePixels};

void check_size(int64_t w, int64_t h, const std::string& name) {
  if (w <= 0 || h <= 0) {
    fail(name, "zero-sized image (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  }
  if (w > kMaxImageSide || h > kMaxImageSide) {
    fail(name, "image too large (" + std::to_string(w) + "x" + std::to_string(h) +
                   "; the limit is " + std::to_string(kMaxImageSide) + " pixels per side)");
  }
  const int64_t limit = g_max_image_pixels.load(std::memory_order_relaxed);
  if (w * h > limit) {
    fail(name, "image too large (" + std::to_string(w) + "x" + std::to_string(h) + " = " + std::to_string(w * h) +
                   " pixels; the limit is " + std::to_string(limit) + ", --max-image-pixels)");
  }
}

// The mode the decoded pixels can actually support, given what the header
// said (`info`) and what OpenCV produced (`cn` channels).
PilMode resolve_mode(const HeaderInfo& info, int cn) {
  auto from_channels = [](int c) {
    switch (c) {
      case 1: return PilMode::kL;
      case 2: return PilMode::kLA;
      case 3: return PilMode::kRGB;
      default: return PilMode::kRGBA;
    }
  };
  if (!info.mode_known) return from_channels(cn);
  switch (info.mode) {
    case PilMode::k1:
    case PilMode::kL:
      // Greyscale files decode to one channel; anything else: trust the pixels.
      return cn == 1 ? info.mode : from_channels(cn);
    case PilMode::kP:
      return PilMode::kP;  // grey (1 channel) or colour, with or without tRNS alpha
    case PilMode::kLA:
      // OpenCV gives grey+alpha as BGRA with B == G == R.
      return cn == 2 || cn == 4 ? PilMode::kLA : from_channels(cn);
    case PilMode::kRGB:
      // An RGB PNG with a tRNS colour decodes to BGRA; PIL keeps it "RGB"
      // (not premultiplied), so the alpha is dropped.
      return cn >= 3 ? PilMode::kRGB : PilMode::kL;
    case PilMode::kRGBA:
      return cn == 4 ? PilMode::kRGBA : from_channels(cn);
  }
  return from_channels(cn);
}

template <typename T>
void convert_pixels(const cv::Mat& m, const int* map, int out_channels, DecodedImage& out) {
  const int cn = m.channels();
  const int shift = sizeof(T) == 1 ? 0 : 8;  // 16-bit: keep the high byte
  uint8_t* dst = out.pixels.data();
  for (int y = 0; y < m.rows; ++y) {
    const T* src = m.ptr<T>(y);
    for (int x = 0; x < m.cols; ++x, src += cn) {
      for (int c = 0; c < out_channels; ++c) *dst++ = static_cast<uint8_t>(src[map[c]] >> shift);
    }
  }
}

}  // namespace

void set_max_image_pixels(int64_t pixels) {
  if (pixels < 1) throw invalid_argument("max_image_pixels must be at least 1, got " + std::to_string(pixels));
  g_max_image_pixels.store(pixels, std::memory_order_relaxed);
}

int64_t max_image_pixels() { return g_max_image_pixels.load(std::memory_order_relaxed); }

int64_t decode_memory_bound(const uint8_t* data, size_t size, const std::string& name) {
  if (data == nullptr || size == 0) fail(name, "empty image data");
  const HeaderInfo info = sniff(Bytes(data, size), name);
  if (info.width < 0 || info.height < 0) return decode_memory_for_pixels(max_image_pixels());
  check_size(info.width, info.height, name);
  return decode_memory_for_pixels(info.width * info.height);
}

DecodedImage decode_image(const uint8_t* data, size_t size, const std::string& name) {
  if (data == nullptr || size == 0) fail(name, "empty image data");
  if (size > size_t(INT_MAX)) fail(name, "image data too large (" + std::to_string(size) + " bytes)");
  const Bytes bytes(data, size);
  const HeaderInfo info = sniff(bytes, name);
  if (info.width >= 0 && info.height >= 0) check_size(info.width, info.height, name);

  // A PNG's colour profile is dropped before decoding. Neither OpenCV nor
  // Pillow (the reference) applies it to the pixels, and libpng prints a
  // warning to stderr for every image with a profile it knows to be wrong
  // ("iCCP: known incorrect sRGB profile": common in the wild, and noise in
  // users' terminals and logs).
  std::vector<uint8_t> without_profile;
  if (info.format == Format::kPng && info.png_iccp_bytes > 0) {
    without_profile.reserve(size - info.png_iccp_bytes);
    without_profile.insert(without_profile.end(), data, data + info.png_iccp_pos);
    without_profile.insert(without_profile.end(), data + info.png_iccp_pos + info.png_iccp_bytes, data + size);
    data = without_profile.data();
    size = without_profile.size();
  }
  cv::Mat m;
  try {
    const cv::Mat buf(1, static_cast<int>(size), CV_8UC1, const_cast<uint8_t*>(data));
    // IMREAD_UNCHANGED: keep alpha and bit depth, and never apply EXIF
    // orientation (OpenCV applies it for every other flag value).
    m = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    fail(name, std::string("cannot decode ") + format_name(info.format) + " data: " + e.what());
  }
  if (m.empty() || m.dims != 2) {
    fail(name, std::string("corrupt or unsupported ") + format_name(info.format) + " data");
  }
  check_size(m.cols, m.rows, name);
  if ((info.width >= 0 && info.width != m.cols) || (info.height >= 0 && info.height != m.rows)) {
    fail(name, "corrupt " + std::string(format_name(info.format)) + " data (decoded size " +
                   std::to_string(m.cols) + "x" + std::to_string(m.rows) + " differs from the header's " +
                   std::to_string(info.width) + "x" + std::to_string(info.height) + ")");
  }
  const int depth = m.depth();
  const int cn = m.channels();
  if ((depth != CV_8U && depth != CV_16U) || cn < 1 || cn > 4) {
    fail(name, "unsupported sample format (only 8- and 16-bit integer images with 1 to 4 channels)");
  }

  DecodedImage out;
  out.width = m.cols;
  out.height = m.rows;
  out.mode = resolve_mode(info, cn);
  out.channels = pil_mode_channels(out.mode);
  // Source channel (OpenCV order: grey, grey+alpha, BGR, BGRA) for each
  // output channel (PIL order: L, LA, RGB, RGBA).
  int map[4] = {0, 0, 0, 0};
  switch (out.mode) {
    case PilMode::k1:
    case PilMode::kL: map[0] = 0; break;
    case PilMode::kLA: map[0] = 0; map[1] = cn - 1; break;
    case PilMode::kP:
    case PilMode::kRGB:
      if (cn >= 3) {
        map[0] = 2; map[1] = 1; map[2] = 0;
      }  // else grey replicated: all 0
      break;
    case PilMode::kRGBA: map[0] = 2; map[1] = 1; map[2] = 0; map[3] = 3; break;
  }
  out.pixels.resize(size_t(out.width) * size_t(out.height) * size_t(out.channels));
  if (depth == CV_8U) {
    convert_pixels<uint8_t>(m, map, out.channels, out);
  } else {
    convert_pixels<uint16_t>(m, map, out.channels, out);
  }
  return out;
}

DecodedImage decode_image_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw not_found("image '" + path + "': cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw invalid_argument("image '" + path + "': read error");
  return decode_image(bytes.data(), bytes.size(), path);
}

void check_image_file_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw not_found("image '" + path + "': cannot open file");
  uint8_t head[12] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  if (in.bad()) throw invalid_argument("image '" + path + "': read error");
  const size_t n = static_cast<size_t>(in.gcount());
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  const bool known = (n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) ||
                     (n >= 8 && std::memcmp(head, kPng, 8) == 0) ||
                     (n >= 12 && std::memcmp(head, "RIFF", 4) == 0 && std::memcmp(head + 8, "WEBP", 4) == 0) ||
                     (n >= 2 && head[0] == 'B' && head[1] == 'M') ||
                     (n >= 8 && (std::memcmp(head, "II*\0", 4) == 0 || std::memcmp(head, "MM\0*", 4) == 0));
  if (n == 0) fail(path, "empty file");
  if (!known) fail(path, "not a recognised image format (expected JPEG, PNG, WebP, BMP or TIFF)");
}

}  // namespace refinery
