// Image decoding and CLIP preprocessing against the Python reference
// (OpenAI CLIP's _transform, Pillow 9.4): the fixture's `image_pixels`.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/image/image_decoder.h"
#include "core/image/image_preprocessor.h"
#include "core/safetensors/safetensors.h"

namespace refinery {
namespace {

const std::string kFixtureDir = REFINERY_FIXTURE_DIR;
const std::string kImageDir = kFixtureDir + "/images";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs `f`, expecting a refinery::Error of kind kInvalidArgument whose message
// contains `name`.
template <typename F>
void expect_invalid_naming(F&& f, const std::string& name) {
  try {
    f();
    ADD_FAILURE() << "expected refinery::Error for " << name;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------ parity

TEST(ImagePreprocessorTest, MatchesReferencePixels) {
  const SafetensorsFile ref = SafetensorsFile::open(kFixtureDir + "/reference.safetensors");
  const TensorView& pixels = ref.at("image_pixels");
  ASSERT_EQ(pixels.shape, (std::vector<int64_t>{9, 3, 64, 64}));
  const std::vector<float> expected = pixels.to_floats();
  const std::vector<std::string> names = nlohmann::json::parse(ref.metadata().at("images"));
  ASSERT_EQ(names.size(), 9u);

  // The reference lists the images in sorted file-name order.
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(kImageDir)) {
    files.push_back(entry.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files, names);

  ImagePreprocessorOptions options;
  options.size = 64;
  const ImagePreprocessor pre(options);
  const size_t per_image = 3 * 64 * 64;
  for (size_t i = 0; i < names.size(); ++i) {
    const DecodedImage img = decode_image_file(kImageDir + "/" + names[i]);
    const std::vector<float> got = pre.preprocess(img);
    ASSERT_EQ(got.size(), per_image);
    size_t same_level = 0, same_float = 0;
    int max_diff = 0;
    for (size_t j = 0; j < per_image; ++j) {
      const int c = static_cast<int>(j / (64 * 64));
      const double m = options.mean[c], s = options.std[c];
      const float want = expected[i * per_image + j];
      const long a = std::lround((static_cast<double>(got[j]) * s + m) * 255.0);
      const long b = std::lround((static_cast<double>(want) * s + m) * 255.0);
      same_level += a == b;
      same_float += std::memcmp(&got[j], &want, sizeof(float)) == 0;
      max_diff = std::max(max_diff, static_cast<int>(std::labs(a - b)));
    }
    const double frac = static_cast<double>(same_level) / per_image;
    std::printf("  %-18s mode %-4s %4dx%-4d identical levels %.4f%%, max diff %d, identical floats %.4f%%\n",
                names[i].c_str(), pil_mode_name(img.mode), img.width, img.height, 100.0 * frac, max_diff,
                100.0 * same_float / per_image);
    EXPECT_GE(frac, 0.99) << names[i];
    EXPECT_LE(max_diff, 1) << names[i];
  }
}

TEST(ImagePreprocessorTest, FixtureModes) {
  const std::pair<const char*, PilMode> cases[] = {
      {"astronaut.png", PilMode::kRGB},  {"camera.png", PilMode::kL},
      {"logo.png", PilMode::kRGBA},      {"palette_color.png", PilMode::kP},
      {"rocket.jpg", PilMode::kRGB},     {"transparent.png", PilMode::kRGBA},
  };
  for (const auto& [file, mode] : cases) {
    const DecodedImage img = decode_image_file(kImageDir + "/" + file);
    EXPECT_EQ(img.mode, mode) << file << " decoded as " << pil_mode_name(img.mode);
    EXPECT_EQ(img.channels, pil_mode_channels(mode)) << file;
    EXPECT_EQ(img.pixels.size(), size_t(img.width) * img.height * img.channels) << file;
  }
}

// ------------------------------------------------------------------ EXIF

// The frame size in a JPEG's SOF marker, and its EXIF orientation (0: none).
struct JpegFacts {
  int width = -1, height = -1, orientation = 0;
};

JpegFacts read_jpeg_facts(const std::vector<uint8_t>& d) {
  JpegFacts f;
  size_t p = 2;
  while (p + 4 <= d.size() && d[p] == 0xFF) {
    const int m = d[p + 1];
    const size_t len = (size_t(d[p + 2]) << 8) | d[p + 3];
    const size_t seg = p + 4;  // segment payload
    if (m == 0xE1 && len >= 8 && std::memcmp(&d[seg], "Exif\0\0", 6) == 0) {
      const size_t t = seg + 6;  // TIFF header
      const bool le = d[t] == 'I';
      auto u16 = [&](size_t q) { return le ? d[q] | (d[q + 1] << 8) : (d[q] << 8) | d[q + 1]; };
      auto u32 = [&](size_t q) { return le ? u16(q) | (u16(q + 2) << 16) : (u16(q) << 16) | u16(q + 2); };
      const size_t ifd = t + u32(t + 4);
      for (int i = 0, n = u16(ifd); i < n; ++i) {
        if (u16(ifd + 2 + 12 * i) == 0x0112) f.orientation = u16(ifd + 2 + 12 * i + 8);
      }
    }
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      f.height = (d[seg + 1] << 8) | d[seg + 2];
      f.width = (d[seg + 3] << 8) | d[seg + 4];
      break;
    }
    p += 2 + len;
  }
  return f;
}

TEST(ImageDecoderTest, ExifOrientationIsNotApplied) {
  const std::vector<uint8_t> bytes = read_bytes(kImageDir + "/exif_rotated.jpg");
  const JpegFacts facts = read_jpeg_facts(bytes);
  ASSERT_GT(facts.width, 0);
  ASSERT_NE(facts.width, facts.height);  // else a rotation would not show
  // The file really asks for a rotation (orientations 5-8 swap the sides).
  ASSERT_GE(facts.orientation, 5) << "exif_rotated.jpg should carry a rotating EXIF orientation";
  const DecodedImage img = decode_image(bytes.data(), bytes.size(), "exif_rotated.jpg");
  EXPECT_EQ(img.width, facts.width);
  EXPECT_EQ(img.height, facts.height);
}

// A colour profile (iCCP) is not applied, by Pillow or by us, and libpng's
// warnings about broken ones ("known incorrect sRGB profile") must not reach
// the user's terminal: the chunk is dropped before decoding, which leaves the
// pixels as they were (MatchesReferencePixels checks them against Pillow's).
TEST(ImageDecoderTest, ColourProfilesAreIgnoredWithoutWarnings) {
  for (const char* file : {"astronaut.png", "chelsea.png"}) {
    const std::vector<uint8_t> bytes = read_bytes(kImageDir + "/" + file);
    ASSERT_NE(std::search(bytes.begin(), bytes.end(), std::begin("iCCP"), std::end("iCCP") - 1), bytes.end())
        << file << " should carry a colour profile";
    ::testing::internal::CaptureStderr();
    const DecodedImage img = decode_image(bytes.data(), bytes.size(), file);
    const std::string printed = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(printed, "") << file;
    EXPECT_GT(img.width, 0);
  }
}

// ------------------------------------------------------------------ alpha

TEST(ImagePreprocessorTest, TransparentPixelsComeOutBlack) {
  const DecodedImage img = decode_image_file(kImageDir + "/transparent.png");
  ASSERT_EQ(img.mode, PilMode::kRGBA);
  // The corners are fully transparent, and their stored colour is not black
  // (so a straight, unpremultiplied resize would not give black).
  const uint8_t* corner = &img.pixels[0];
  ASSERT_EQ(corner[3], 0);
  bool coloured_transparent = false;
  for (size_t i = 0; i < img.pixels.size(); i += 4) {
    if (img.pixels[i + 3] == 0 && (img.pixels[i] | img.pixels[i + 1] | img.pixels[i + 2]) != 0) {
      coloured_transparent = true;
      break;
    }
  }
  ImagePreprocessorOptions options;
  options.size = 64;
  const ImagePreprocessor pre(options);
  const std::vector<float> out = pre.preprocess(img);
  const size_t plane = 64 * 64;
  for (int c = 0; c < 3; ++c) {
    const float black = (0.0f - options.mean[c]) / options.std[c];
    EXPECT_EQ(out[c * plane + 0], black) << "channel " << c;  // top-left corner
    EXPECT_EQ(out[c * plane + plane - 1], black) << "channel " << c;  // bottom-right corner
  }
  if (!coloured_transparent) std::printf("  note: transparent.png's transparent pixels are stored black\n");

  // Synthetic: white, fully transparent everywhere. Premultiplied resize ->
  // black; a straight resize would give white.
  for (PilMode mode : {PilMode::kRGBA, PilMode::kLA}) {
    DecodedImage t;
    t.width = 8;
    t.height = 6;
    t.mode = mode;
    t.channels = pil_mode_channels(mode);
    t.pixels.assign(size_t(8) * 6 * t.channels, 255);
    for (size_t i = t.channels - 1; i < t.pixels.size(); i += t.channels) t.pixels[i] = 0;
    ImagePreprocessorOptions o;
    o.size = 4;
    const std::vector<float> v = ImagePreprocessor(o).preprocess(t);
    for (size_t i = 0; i < v.size(); ++i) {
      const int c = static_cast<int>(i / 16);
      ASSERT_EQ(v[i], (0.0f - o.mean[c]) / o.std[c]) << pil_mode_name(mode) << " value " << i;
    }
    // Same size: Image.resize is a copy, nothing premultiplied, colour kept.
    t.width = 4;
    t.height = 4;
    t.pixels.resize(size_t(16) * t.channels);
    const std::vector<float> same = ImagePreprocessor(o).preprocess(t);
    for (size_t i = 0; i < same.size(); ++i) {
      const int c = static_cast<int>(i / 16);
      ASSERT_EQ(same[i], (1.0f - o.mean[c]) / o.std[c]) << pil_mode_name(mode) << " value " << i;
    }
  }
}

// ------------------------------------------------------------------ errors

TEST(ImageDecoderTest, RejectsBadData) {
  const std::vector<uint8_t> rocket = read_bytes(kImageDir + "/rocket.jpg");
  ASSERT_GT(rocket.size(), 1000u);
  expect_invalid_naming([&] { decode_image(rocket.data(), rocket.size() / 2, "half-rocket.jpg"); },
                        "half-rocket.jpg");

  const std::vector<uint8_t> camera = read_bytes(kImageDir + "/camera.png");
  expect_invalid_naming([&] { decode_image(camera.data(), camera.size() / 2, "half-camera.png"); },
                        "half-camera.png");

  const std::string text = "This is not an image, just some notes.\n";
  expect_invalid_naming(
      [&] { decode_image(reinterpret_cast<const uint8_t*>(text.data()), text.size(), "notes.png"); },
      "notes.png");

  expect_invalid_naming([&] { decode_image(nullptr, 0, "empty.jpg"); }, "empty.jpg");
  const uint8_t one = 0;
  expect_invalid_naming([&] { decode_image(&one, 0, "empty2.jpg"); }, "empty2.jpg");

  expect_invalid_naming([&] { decode_image_file(kFixtureDir + "/texts.json"); }, "texts.json");
}

// A minimal PNG writer (stored deflate blocks), so the tests can make the
// colour types and bit depths the fixture lacks.
uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}

void put_chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put32(png, crc32(body.data(), body.size()));
}

// `rows`: the raw scanlines, each without its filter byte.
std::vector<uint8_t> make_png(uint32_t w, uint32_t h, int bit_depth, int color_type,
                              const std::vector<std::vector<uint8_t>>& rows) {
  std::vector<uint8_t> raw;
  for (const auto& r : rows) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), r.begin(), r.end());
  }
  std::vector<uint8_t> z = {0x78, 0x01, 0x01};  // zlib header; one final stored block
  const uint16_t len = static_cast<uint16_t>(raw.size());
  z.push_back(len & 0xFF);
  z.push_back(len >> 8);
  z.push_back(~len & 0xFF);
  z.push_back((~len >> 8) & 0xFF);
  z.insert(z.end(), raw.begin(), raw.end());
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put32(z, (b << 16) | a);

  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, w);
  put32(ihdr, h);
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(bit_depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  put_chunk(png, "IHDR", ihdr);
  if (!rows.empty()) put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", {});
  return png;
}

TEST(ImageDecoderTest, RejectsBadSizes) {
  // Checked from the header, before any pixel is decoded.
  const std::vector<uint8_t> huge = make_png(kMaxImageSide + 1, 4, 8, 0, {});
  expect_invalid_naming([&] { decode_image(huge.data(), huge.size(), "huge.png"); }, "huge.png");
  const std::vector<uint8_t> empty = make_png(0, 4, 8, 0, {});
  expect_invalid_naming([&] { decode_image(empty.data(), empty.size(), "zero.png"); }, "zero.png");
}

// A small file may declare a huge image: 16384 x 16384 16-bit RGBA would take
// 2 GB to decode. The total is checked from the header against the
// operator's limit, before any decoding.
TEST(ImageDecoderTest, RejectsImagesOverThePixelLimitFromTheirHeader) {
  const std::vector<uint8_t> bomb = make_png(16384, 16384, 16, 6, {});  // header only: ~60 bytes
  ASSERT_LT(bomb.size(), 100u);
  try {
    decode_image(bomb.data(), bomb.size(), "bomb.png");
    FAIL() << "a 268-megapixel header was decoded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("bomb.png"), std::string::npos) << m;
    EXPECT_NE(m.find("16384x16384 = 268435456 pixels"), std::string::npos) << m;
    EXPECT_NE(m.find("40000000"), std::string::npos) << m;
  }
  // 8000 x 6000 = 48 MP is over the default; the operator raises the limit
  // and the file gets as far as its (missing) pixel data.
  const std::vector<uint8_t> photo = make_png(8000, 6000, 8, 2, {});
  EXPECT_THROW(decode_image(photo.data(), photo.size(), "photo.png"), Error);
  set_max_image_pixels(50'000'000);
  try {
    decode_image(photo.data(), photo.size(), "photo.png");
    FAIL() << "a PNG without pixel data decoded";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
  set_max_image_pixels(kDefaultMaxImagePixels);
  EXPECT_THROW(set_max_image_pixels(0), Error);
}

TEST(ImageDecoderTest, PngModesAndDepths) {
  {  // grey + alpha -> "LA", two channels
    const auto png = make_png(2, 1, 8, 4, {{100, 0, 50, 128}});
    const DecodedImage img = decode_image(png.data(), png.size(), "la.png");
    EXPECT_EQ(img.mode, PilMode::kLA);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{100, 0, 50, 128}));
  }
  {  // 16-bit grey -> "L", high bytes
    const auto png = make_png(2, 1, 16, 0, {{0x12, 0x34, 0xAB, 0xCD}});
    const DecodedImage img = decode_image(png.data(), png.size(), "grey16.png");
    EXPECT_EQ(img.mode, PilMode::kL);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{0x12, 0xAB}));
  }
  {  // 16-bit RGB -> "RGB", high bytes, R G B order
    const auto png = make_png(1, 1, 16, 2, {{0x10, 0x01, 0x20, 0x02, 0x30, 0x03}});
    const DecodedImage img = decode_image(png.data(), png.size(), "rgb16.png");
    EXPECT_EQ(img.mode, PilMode::kRGB);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{0x10, 0x20, 0x30}));
  }
  {  // 1-bit grey -> "1", 0/255
    const auto png = make_png(8, 1, 1, 0, {{0xB0}});
    const DecodedImage img = decode_image(png.data(), png.size(), "bits.png");
    EXPECT_EQ(img.mode, PilMode::k1);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 0, 255, 255, 0, 0, 0, 0}));
  }
  {  // RGBA keeps R G B A order
    const auto png = make_png(1, 1, 8, 6, {{1, 2, 3, 4}});
    const DecodedImage img = decode_image(png.data(), png.size(), "rgba.png");
    EXPECT_EQ(img.mode, PilMode::kRGBA);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{1, 2, 3, 4}));
  }
}

// A bottom-up BMP with a palette (BGRX entries) and `bits` per pixel; `rows`
// are the packed index bytes of each row, top first, without padding.
std::vector<uint8_t> make_bmp(int w, int h, int bits, const std::vector<std::array<uint8_t, 3>>& palette,
                              const std::vector<std::vector<uint8_t>>& rows) {
  const size_t stride = ((size_t(w) * bits + 31) / 32) * 4;
  const uint32_t offset = 14 + 40 + 4 * static_cast<uint32_t>(palette.size());
  const uint32_t file_size = offset + static_cast<uint32_t>(stride * h);
  std::vector<uint8_t> b;
  auto le = [&](uint32_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  b.push_back('B');
  b.push_back('M');
  le(file_size, 4);
  le(0, 4);
  le(offset, 4);
  le(40, 4);
  le(w, 4);
  le(h, 4);
  le(1, 2);
  le(bits, 2);
  le(0, 4);  // BI_RGB
  le(static_cast<uint32_t>(stride * h), 4);
  le(2835, 4);
  le(2835, 4);
  le(static_cast<uint32_t>(palette.size()), 4);
  le(0, 4);
  for (const auto& e : palette) b.insert(b.end(), {e[0], e[1], e[2], 0});
  for (int y = h - 1; y >= 0; --y) {
    std::vector<uint8_t> row = rows[y];
    row.resize(stride, 0);
    b.insert(b.end(), row.begin(), row.end());
  }
  return b;
}

TEST(ImageDecoderTest, BmpPaletteModes) {
  {  // a colour palette -> "P", stored as the expanded RGB colours
    const auto bmp = make_bmp(2, 2, 8, {{{3, 2, 1}}, {{30, 20, 10}}, {{0, 0, 255}}}, {{0, 1}, {2, 0}});
    const DecodedImage img = decode_image(bmp.data(), bmp.size(), "p.bmp");
    EXPECT_EQ(img.mode, PilMode::kP);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{1, 2, 3, 10, 20, 30, 255, 0, 0, 1, 2, 3}));
  }
  {  // the identity grey ramp -> "L"
    std::vector<std::array<uint8_t, 3>> ramp(256);
    for (int i = 0; i < 256; ++i) ramp[i] = {uint8_t(i), uint8_t(i), uint8_t(i)};
    const auto bmp = make_bmp(3, 1, 8, ramp, {{7, 200, 255}});
    const DecodedImage img = decode_image(bmp.data(), bmp.size(), "l.bmp");
    EXPECT_EQ(img.mode, PilMode::kL);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{7, 200, 255}));
  }
  {  // black and white, 1 bit -> "1"
    const auto bmp = make_bmp(8, 1, 1, {{{0, 0, 0}}, {{255, 255, 255}}}, {{0xA1}});
    const DecodedImage img = decode_image(bmp.data(), bmp.size(), "bits.bmp");
    EXPECT_EQ(img.mode, PilMode::k1);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 0, 255, 0, 0, 0, 0, 255}));
  }
}

TEST(ImageDecoderTest, OtherFormatsKeepRgbOrder) {
  cv::Mat bgr(3, 5, CV_8UC3), grey(3, 5, CV_8UC1);
  std::vector<uint8_t> want_rgb, want_grey;
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 5; ++x) {
      const cv::Vec3b v(uint8_t(10 + x), uint8_t(100 + y), uint8_t(200 + x + y));  // B, G, R
      bgr.at<cv::Vec3b>(y, x) = v;
      want_rgb.insert(want_rgb.end(), {v[2], v[1], v[0]});
      grey.at<uint8_t>(y, x) = uint8_t(30 * x + y);
      want_grey.push_back(uint8_t(30 * x + y));
    }
  }
  struct Case {
    const char* ext;
    const cv::Mat& mat;
    std::vector<int> params;
    PilMode mode;
    const std::vector<uint8_t>& want;
  } cases[] = {
      {".bmp", bgr, {}, PilMode::kRGB, want_rgb},
      {".bmp", grey, {}, PilMode::kL, want_grey},
      {".tiff", bgr, {}, PilMode::kRGB, want_rgb},
      {".tiff", grey, {}, PilMode::kL, want_grey},
      {".webp", bgr, {cv::IMWRITE_WEBP_QUALITY, 101}, PilMode::kRGB, want_rgb},  // lossless
  };
  for (const Case& c : cases) {
    if (!cv::haveImageWriter(c.ext)) {
      std::printf("  skipped %s: this OpenCV cannot write it\n", c.ext);
      continue;
    }
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(cv::imencode(c.ext, c.mat, bytes, c.params)) << c.ext;
    const std::string name = std::string("sample") + c.ext;
    const DecodedImage img = decode_image(bytes.data(), bytes.size(), name);
    EXPECT_EQ(img.mode, c.mode) << name;
    EXPECT_EQ(img.width, 5) << name;
    EXPECT_EQ(img.height, 3) << name;
    EXPECT_EQ(img.pixels, c.want) << name;
    expect_invalid_naming([&] { decode_image(bytes.data(), bytes.size() / 2, "half-" + name); }, "half-" + name);
  }
}

// ------------------------------------------------------------------ resampling

// Pillow's bicubic weights for one output sample, in plain double precision:
// the kernel (a = -0.5) stretched by the downscale factor, taps
// [int(center - support + 0.5), int(center + support + 0.5)) clipped to the
// input, normalised to sum 1.
double reference_sample(const std::vector<int>& in, int out_size, int xx) {
  const double scale = double(in.size()) / out_size;
  const double fs = std::max(scale, 1.0);
  const double support = 2.0 * fs;
  const double center = (xx + 0.5) * scale;
  const int lo = std::max(0, int(center - support + 0.5));
  const int hi = std::min(int(in.size()), int(center + support + 0.5));
  double sum = 0, wsum = 0;
  for (int x = lo; x < hi; ++x) {
    const double t = std::fabs((x - center + 0.5) / fs);
    const double w = t < 1 ? (1.5 * t - 2.5) * t * t + 1 : t < 2 ? -0.5 * (((t - 5) * t + 8) * t - 4) : 0;
    sum += w * in[x];
    wsum += w;
  }
  return sum / wsum;
}

TEST(ImageResizeTest, BicubicMatchesHandComputedValues) {
  // 8 -> 4 (2:1 down, support 4) and 4 -> 8 (up, support 2), as a row and as
  // a column (the horizontal and the vertical pass).
  const std::vector<int> row8 = {0, 10, 20, 200, 60, 250, 255, 90};
  const std::vector<int> row4 = {0, 255, 40, 180};
  // By hand from the formula in reference_sample; e.g. output 0 of 8 -> 4:
  // center 1, taps x = 0..4 at distances |x + 0.5 - 1| / 2 = 0.25, 0.25,
  // 0.75, 1.25, 1.75, weights 0.8671875, 0.8671875, 0.2265625, -0.0703125,
  // -0.0234375 (sum 1.8671875), value (10 * 0.8671875 + 20 * 0.2265625 -
  // 200 * 0.0703125 - 60 * 0.0234375) / 1.8671875 = -1.21 -> clipped to 0.
  // The others: 90.48, 179.86, 185.80 and, up, -22.5, 53.10, 213.32, 225.98,
  // 79.80, 56.22, 148.72, 192.35 (none close to a rounding boundary).
  const std::vector<uint8_t> want_down = {0, 90, 180, 186};
  const std::vector<uint8_t> want_up = {0, 53, 213, 226, 80, 56, 149, 192};
  struct Case {
    const std::vector<int>& in;
    int out;
    const std::vector<uint8_t>& want;
  } cases[] = {{row8, 4, want_down}, {row4, 8, want_up}};
  for (const Case& c : cases) {
    const int n = static_cast<int>(c.in.size());
    std::vector<uint8_t> src(c.in.begin(), c.in.end());
    const std::vector<uint8_t> h = resize_bicubic_pillow(src.data(), n, 1, 1, c.out, 1);
    const std::vector<uint8_t> v = resize_bicubic_pillow(src.data(), 1, n, 1, 1, c.out);
    ASSERT_EQ(h.size(), size_t(c.out));
    for (int i = 0; i < c.out; ++i) {
      const double r = reference_sample(c.in, c.out, i);
      const int expect = static_cast<int>(std::min(255.0, std::max(0.0, std::floor(r + 0.5))));
      EXPECT_EQ(int(c.want[i]), expect) << "hand value " << i << " (double formula " << r << ")";
      EXPECT_EQ(int(h[i]), int(c.want[i])) << "horizontal, output " << i << " of " << c.out;
      EXPECT_EQ(int(v[i]), int(c.want[i])) << "vertical, output " << i << " of " << c.out;
    }
    // Channels are independent: the same row in each of 3 channels.
    std::vector<uint8_t> rgb;
    for (int x : c.in) rgb.insert(rgb.end(), {uint8_t(x), uint8_t(255 - x), uint8_t(x / 2)});
    const std::vector<uint8_t> h3 = resize_bicubic_pillow(rgb.data(), n, 1, 3, c.out, 1);
    for (int i = 0; i < c.out; ++i) {
      EXPECT_EQ(h3[i * 3], h[i]);
    }
  }
}

TEST(ImageResizeTest, NearestAndGeometry) {
  // Pillow's nearest: source floor((x + 0.5) * in / out).
  std::vector<uint8_t> src(10);
  for (int i = 0; i < 10; ++i) src[i] = static_cast<uint8_t>(i);
  const std::vector<uint8_t> up = resize_nearest_pillow(src.data(), 10, 1, 1, 64, 1);
  for (int x = 0; x < 64; ++x) EXPECT_EQ(up[x], int((x + 0.5) * 10 / 64)) << x;
  const std::vector<uint8_t> down = resize_nearest_pillow(src.data(), 10, 1, 1, 4, 1);
  EXPECT_EQ(down, (std::vector<uint8_t>{1, 3, 6, 8}));

  int w = 0, h = 0;
  clip_resize_size(451, 300, 64, &w, &h);
  EXPECT_EQ(w, 96);  // int(64 * 451 / 300) = int(96.21)
  EXPECT_EQ(h, 64);
  clip_resize_size(300, 451, 224, &w, &h);
  EXPECT_EQ(w, 224);
  EXPECT_EQ(h, 336);  // int(224 * 451 / 300) = int(336.75)
  clip_resize_size(10, 10, 64, &w, &h);
  EXPECT_EQ(w, 64);
  EXPECT_EQ(h, 64);
  // Python's round: halves to even.
  EXPECT_EQ(clip_center_crop_offset(64, 64), 0);
  EXPECT_EQ(clip_center_crop_offset(65, 64), 0);  // round(0.5) = 0
  EXPECT_EQ(clip_center_crop_offset(66, 64), 1);
  EXPECT_EQ(clip_center_crop_offset(67, 64), 2);  // round(1.5) = 2
  EXPECT_EQ(clip_center_crop_offset(69, 64), 2);  // round(2.5) = 2
  EXPECT_EQ(clip_center_crop_offset(96, 64), 16);
}

TEST(ImagePreprocessorTest, WindowedResizeEqualsFullResizeThenCrop) {
  // The preprocessor only computes the crop; it must equal resizing the
  // whole image and cropping it.
  const DecodedImage img = decode_image_file(kImageDir + "/chelsea.png");
  ASSERT_EQ(img.mode, PilMode::kRGB);
  for (int n : {64, 97, 224}) {
    ImagePreprocessorOptions o;
    o.size = n;
    const std::vector<float> got = ImagePreprocessor(o).preprocess(img);
    int w = 0, h = 0;
    clip_resize_size(img.width, img.height, n, &w, &h);
    const std::vector<uint8_t> full = resize_bicubic_pillow(img.pixels.data(), img.width, img.height, 3, w, h);
    const int left = clip_center_crop_offset(w, n), top = clip_center_crop_offset(h, n);
    size_t bad = 0;
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < n; ++y) {
        for (int x = 0; x < n; ++x) {
          const uint8_t v = full[(size_t(top + y) * w + left + x) * 3 + c];
          const float want = (static_cast<float>(v) / 255.0f - o.mean[c]) / o.std[c];
          bad += got[(size_t(c) * n + y) * n + x] != want;
        }
      }
    }
    EXPECT_EQ(bad, 0u) << "size " << n;
  }
}

TEST(ImagePreprocessorTest, WindowedPremultipliedResizeEqualsFullResizeThenCrop) {
  // RGBA: premultiply (MULDIV255), resize everything, un-premultiply
  // (truncating division), crop, drop alpha, written out the long way.
  const DecodedImage img = decode_image_file(kImageDir + "/transparent.png");
  ASSERT_EQ(img.mode, PilMode::kRGBA);
  std::vector<uint8_t> pre(img.pixels.size());
  for (size_t i = 0; i < pre.size(); i += 4) {
    const unsigned a = img.pixels[i + 3];
    for (int c = 0; c < 3; ++c) {
      const unsigned t = img.pixels[i + c] * a + 128;
      pre[i + c] = static_cast<uint8_t>(((t >> 8) + t) >> 8);
    }
    pre[i + 3] = static_cast<uint8_t>(a);
  }
  for (int n : {64, 97, 224}) {
    ImagePreprocessorOptions o;
    o.size = n;
    const std::vector<float> got = ImagePreprocessor(o).preprocess(img);
    int w = 0, h = 0;
    clip_resize_size(img.width, img.height, n, &w, &h);
    const std::vector<uint8_t> full = resize_bicubic_pillow(pre.data(), img.width, img.height, 4, w, h);
    const int left = clip_center_crop_offset(w, n), top = clip_center_crop_offset(h, n);
    size_t bad = 0;
    for (int y = 0; y < n; ++y) {
      for (int x = 0; x < n; ++x) {
        const uint8_t* px = &full[(size_t(top + y) * w + left + x) * 4];
        for (int c = 0; c < 3; ++c) {
          const unsigned v = (px[3] == 0 || px[3] == 255) ? px[c] : std::min(255u, 255u * px[c] / px[3]);
          const float want = (static_cast<float>(v) / 255.0f - o.mean[c]) / o.std[c];
          bad += got[(size_t(c) * n + y) * n + x] != want;
        }
      }
    }
    EXPECT_EQ(bad, 0u) << "size " << n;
  }
}

TEST(ImagePreprocessorTest, RejectsBadOptionsAndImages) {
  ImagePreprocessorOptions o;
  o.size = 0;
  EXPECT_THROW(ImagePreprocessor{o}, Error);
  o.size = 224;
  o.std[1] = 0.0f;
  EXPECT_THROW(ImagePreprocessor{o}, Error);

  DecodedImage bad;
  bad.width = 4;
  bad.height = 4;
  bad.mode = PilMode::kRGB;
  bad.channels = 3;
  bad.pixels.resize(10);
  EXPECT_THROW(ImagePreprocessor().preprocess(bad), Error);
}

}  // namespace
}  // namespace refinery
