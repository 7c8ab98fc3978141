#include "core/synth/shapes_world.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/base/error.h"
#include "core/base/remove_tree.h"

namespace fs = std::filesystem;

namespace refinery {
namespace {

using nlohmann::json;

const std::vector<std::string> kShapes = {"circle", "triangle", "square", "hexagon", "star"};
const std::vector<std::string> kColours = {"red", "green", "blue", "yellow", "purple", "orange"};
const std::vector<std::string> kSizes = {"small", "large"};
const std::vector<std::string> kTextures = {"plain", "striped", "dotted"};
const std::vector<std::string> kCounts = {"one", "two", "three", "four"};
const std::vector<std::string> kPositions = {"left", "right", "top", "bottom", "center"};
const std::vector<std::string> kBackgrounds = {"black", "gray", "white", "brown"};
const std::vector<std::string> kVariants = {"test", "v2", "a", "r", "sketch"};

// RGB.
const std::map<std::string, cv::Vec3b> kColourRgb = {
    {"red", {220, 30, 30}},    {"green", {30, 180, 50}},   {"blue", {40, 70, 230}},
    {"yellow", {240, 220, 30}}, {"purple", {150, 50, 200}}, {"orange", {250, 140, 20}}};
const std::map<std::string, cv::Vec3b> kBackgroundRgb = {
    {"black", {0, 0, 0}}, {"gray", {128, 128, 128}}, {"white", {255, 255, 255}}, {"brown", {110, 70, 40}}};
const cv::Vec3b kTextureRgb = {40, 40, 40};
const cv::Vec3b kClutterRgb = {150, 150, 150};

cv::Scalar bgr(const cv::Vec3b& rgb) { return cv::Scalar(rgb[2], rgb[1], rgb[0]); }

// FNV-1a: a string's seed, the same on every platform (std::hash is not).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

uint64_t mix(uint64_t a, uint64_t b) {
  WorldRng r(a ^ (b * 0x9E3779B97F4A7C15ULL));
  r.next();
  return r.next();
}

std::string count_word(int count) { return kCounts.at(static_cast<size_t>(count - 1)); }

std::string plural(const std::string& shape, int count) { return count == 1 ? shape : shape + "s"; }

// The outline of one object, centred at (cx, cy), radius r, turned by angle.
std::vector<cv::Point> outline(const std::string& shape, double cx, double cy, double r, double angle) {
  std::vector<cv::Point> p;
  auto add = [&](double rr, double a) {
    p.emplace_back(static_cast<int>(std::lround(cx + rr * std::cos(a))), static_cast<int>(std::lround(cy + rr * std::sin(a))));
  };
  const double pi = 3.14159265358979323846;
  if (shape == "circle") {
    for (int i = 0; i < 48; ++i) add(r, 2 * pi * i / 48);
  } else if (shape == "triangle") {
    for (int i = 0; i < 3; ++i) add(r, angle + 2 * pi * i / 3);
  } else if (shape == "square") {
    for (int i = 0; i < 4; ++i) add(r * 0.92, angle + pi / 4 + 2 * pi * i / 4);
  } else if (shape == "hexagon") {
    for (int i = 0; i < 6; ++i) add(r, angle + 2 * pi * i / 6);
  } else {  // star
    for (int i = 0; i < 10; ++i) add(i % 2 == 0 ? r : r * 0.45, angle - pi / 2 + 2 * pi * i / 10);
  }
  return p;
}

// Cells of the position's region for `count` objects: {x0, y0, w, h} as
// fractions of the image.
std::vector<cv::Rect2d> cells(const std::string& position, int count) {
  cv::Rect2d region;
  if (position == "left") region = {0, 0, 0.5, 1};
  else if (position == "right") region = {0.5, 0, 0.5, 1};
  else if (position == "top") region = {0, 0, 1, 0.5};
  else if (position == "bottom") region = {0, 0.5, 1, 0.5};
  else region = {0.25, 0.25, 0.5, 0.5};
  int cols = 1, rows = 1;
  if (position == "left" || position == "right") {
    rows = count;
  } else if (position == "top" || position == "bottom") {
    cols = count;
  } else {
    cols = count >= 2 ? 2 : 1;
    rows = count >= 3 ? 2 : 1;
  }
  std::vector<cv::Rect2d> out;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      out.emplace_back(region.x + region.width * c / cols, region.y + region.height * r / rows, region.width / cols,
                       region.height / rows);
    }
  }
  return out;
}

void draw_texture(cv::Mat& img, const cv::Mat& mask, const std::string& texture, int size) {
  if (texture == "plain") return;
  cv::Mat pattern(img.size(), CV_8U, cv::Scalar(0));
  const int step = std::max(3, size / 32);
  if (texture == "striped") {
    for (int y = 0; y < img.rows; y += step) cv::line(pattern, {0, y}, {img.cols - 1, y}, cv::Scalar(255), std::max(1, step / 3));
  } else {
    for (int y = step / 2; y < img.rows; y += step) {
      for (int x = step / 2; x < img.cols; x += step) cv::circle(pattern, {x, y}, std::max(1, step / 4), cv::Scalar(255), -1);
    }
  }
  cv::Mat where;
  cv::bitwise_and(pattern, mask, where);
  img.setTo(bgr(kTextureRgb), where);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw invalid_argument("cannot write " + path);
}

void write_json(const std::string& path, const json& j) { write_bytes(path, j.dump(1) + "\n"); }

// A part of the world is written into a fresh folder beside its place, then
// moved there: a failed run never leaves a half-written part behind.
class PartWriter {
 public:
  PartWriter(const std::string& out_dir, const std::string& name)
      : final_(out_dir + "/" + name), tmp_(out_dir + "/." + name + ".partial") {
    remove_tree(tmp_);
    fs::create_directories(tmp_);
  }
  const std::string& dir() const { return tmp_; }
  void commit() {
    remove_tree(final_);
    fs::rename(tmp_, final_);
  }
  ~PartWriter() {
    std::error_code ec;
    remove_tree(tmp_, ec);
  }

 private:
  std::string final_, tmp_;
};

json scene_json(const ShapeScene& s) {
  return {{"shape", s.shape},       {"colour", s.colour},     {"size", s.size},
          {"texture", s.texture},   {"count", s.count},       {"position", s.position},
          {"background", s.background}, {"variant", s.variant}};
}

// One caption set: images with `captions` captions each of `style`.
// Counts the images written for the progress callback.
struct ImageCounter {
  const ShapesWorldProgress& progress;
  int64_t total = 0;
  int64_t done = 0;
  void wrote_one() {
    ++done;
    if (progress) progress(done, total);
  }
};

int64_t write_caption_set(const std::string& out_dir, const std::string& name, int n, int captions,
                          const std::string& style, uint64_t seed, int image_size, std::string* spec,
                          ImageCounter& counter) {
  PartWriter part(out_dir, name);
  fs::create_directories(part.dir() + "/images");
  json coco = {{"images", json::array()}, {"annotations", json::array()}};
  json scenes = json::array();
  int64_t annotation = 1;
  for (int i = 0; i < n; ++i) {
    WorldRng rng(mix(seed, static_cast<uint64_t>(i)));
    const ShapeScene scene = sample_scene(rng, "test");
    char file[32];
    std::snprintf(file, sizeof file, "%06d.png", i);
    write_bytes(part.dir() + "/images/" + file, render_scene_png(scene, image_size, rng.next()));
    counter.wrote_one();
    coco["images"].push_back({{"id", i}, {"file_name", file}, {"width", image_size}, {"height", image_size}});
    std::set<std::string> said;  // an image's captions are different sentences
    for (int c = 0; c < captions; ++c) {
      std::string caption = describe_scene(scene, style, rng);
      for (int retry = 0; said.count(caption) && retry < 32; ++retry) caption = describe_scene(scene, style, rng);
      said.insert(caption);
      coco["annotations"].push_back({{"id", annotation++}, {"image_id", i}, {"caption", caption}});
    }
    json sj = scene_json(scene);
    sj["file_name"] = file;
    scenes.push_back(sj);
  }
  write_json(part.dir() + "/captions.json", coco);
  write_json(part.dir() + "/scenes.json", scenes);
  part.commit();
  *spec = "coco:" + out_dir + "/" + name + "/captions.json:" + out_dir + "/" + name + "/images";
  return n;
}

}  // namespace

uint64_t WorldRng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

int WorldRng::below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }

double WorldRng::uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

const std::vector<std::string>& shape_attributes() {
  static const std::vector<std::string> a = {"shape", "colour", "size", "texture", "count", "position", "background"};
  return a;
}

const std::vector<std::string>& shape_attribute_values(const std::string& attribute) {
  if (attribute == "shape") return kShapes;
  if (attribute == "colour") return kColours;
  if (attribute == "size") return kSizes;
  if (attribute == "texture") return kTextures;
  if (attribute == "count") return kCounts;
  if (attribute == "position") return kPositions;
  if (attribute == "background") return kBackgrounds;
  throw invalid_argument("unknown scene attribute '" + attribute + "'");
}

std::string scene_attribute(const ShapeScene& s, const std::string& attribute) {
  if (attribute == "shape") return s.shape;
  if (attribute == "colour") return s.colour;
  if (attribute == "size") return s.size;
  if (attribute == "texture") return s.texture;
  if (attribute == "count") return count_word(s.count);
  if (attribute == "position") return s.position;
  if (attribute == "background") return s.background;
  throw invalid_argument("unknown scene attribute '" + attribute + "'");
}

std::string shape_attribute_prompt(const std::string& attribute) {
  if (attribute == "shape") return "a picture of a {}";
  if (attribute == "position") return "a picture of shapes at the {}";
  if (attribute == "background") return "a picture of shapes on a {} background";
  shape_attribute_values(attribute);  // throws for an unknown one
  return "a picture of {} shapes";
}

ShapeScene sample_scene(WorldRng& rng, const std::string& variant, const std::string& fixed_attribute,
                        const std::string& fixed_value) {
  if (std::find(kVariants.begin(), kVariants.end(), variant) == kVariants.end()) {
    throw invalid_argument("unknown variant '" + variant + "' (test, v2, a, r, sketch)");
  }
  ShapeScene s;
  s.variant = variant;
  s.shape = rng.pick(kShapes);
  s.colour = rng.pick(kColours);
  s.size = rng.pick(kSizes);
  s.texture = rng.pick(kTextures);
  s.count = 1 + rng.below(4);
  s.position = rng.pick(kPositions);
  s.background = rng.pick(kBackgrounds);
  if (!fixed_attribute.empty()) {
    const auto& values = shape_attribute_values(fixed_attribute);
    if (std::find(values.begin(), values.end(), fixed_value) == values.end()) {
      throw invalid_argument("'" + fixed_value + "' is not a value of " + fixed_attribute);
    }
    if (fixed_attribute == "shape") s.shape = fixed_value;
    if (fixed_attribute == "colour") s.colour = fixed_value;
    if (fixed_attribute == "size") s.size = fixed_value;
    if (fixed_attribute == "texture") s.texture = fixed_value;
    if (fixed_attribute == "count") s.count = 1 + static_cast<int>(std::find(kCounts.begin(), kCounts.end(), fixed_value) - kCounts.begin());
    if (fixed_attribute == "position") s.position = fixed_value;
    if (fixed_attribute == "background") s.background = fixed_value;
  }
  return s;
}

std::string render_scene_png(const ShapeScene& s, int size, uint64_t seed) {
  if (size < 32) throw invalid_argument("image size " + std::to_string(size) + " is below 32 pixels");
  WorldRng rng(seed);
  // Variant r draws at an eighth of the size and blows it up (pixelated).
  const bool pixelated = s.variant == "r";
  const int canvas = pixelated ? std::max(32, size / 4) : size;
  cv::Mat img(canvas, canvas, CV_8UC3, bgr(kBackgroundRgb.at(s.background)));
  if (pixelated) {  // on a vertical gradient towards mid gray
    const cv::Vec3b b = kBackgroundRgb.at(s.background);
    for (int y = 0; y < canvas; ++y) {
      const double t = 0.5 * y / canvas;
      const cv::Scalar c((1 - t) * b[2] + t * 128, (1 - t) * b[1] + t * 128, (1 - t) * b[0] + t * 128);
      cv::line(img, {0, y}, {canvas - 1, y}, c);
    }
  }
  const double r = canvas * (s.size == "large" ? 0.105 : 0.055);
  std::vector<cv::Rect2d> slots = cells(s.position, s.count);
  if (static_cast<int>(slots.size()) > s.count) {  // 3 objects in a 2 x 2 grid: leave one cell out
    slots.erase(slots.begin() + rng.below(static_cast<int>(slots.size())));
  }
  cv::Mat mask(img.size(), CV_8U, cv::Scalar(0));
  const cv::Scalar colour = bgr(kColourRgb.at(s.colour));
  for (const auto& cell : slots) {
    const double cw = cell.width * canvas, ch = cell.height * canvas;
    // Jitter small enough that a group's centre never reads as a neighbouring position.
    const double room = std::min(0.06 * canvas, std::max(0.0, std::min(cw, ch) / 2 - r - 2));
    const double cx = (cell.x + cell.width / 2) * canvas + (rng.uniform() * 2 - 1) * room;
    const double cy = (cell.y + cell.height / 2) * canvas + (rng.uniform() * 2 - 1) * room;
    const std::vector<std::vector<cv::Point>> poly = {outline(s.shape, cx, cy, r, rng.uniform() * 6.283185307)};
    if (s.variant == "sketch") {
      cv::polylines(img, poly, true, colour, std::max(1, canvas / 64), cv::LINE_8);
    } else {
      cv::fillPoly(mask, poly, cv::Scalar(255), cv::LINE_8);
    }
  }
  if (s.variant != "sketch") {
    img.setTo(colour, mask);
    draw_texture(img, mask, s.texture, canvas);
  }
  if (s.variant == "a") {  // occluders across the objects, and clutter
    for (const auto& cell : slots) {
      const double cx = (cell.x + cell.width / 2) * canvas, cy = (cell.y + cell.height / 2) * canvas;
      const double a = rng.uniform() * 3.14159;
      const cv::Point p0(static_cast<int>(cx - r * std::cos(a)), static_cast<int>(cy - r * std::sin(a)));
      const cv::Point p1(static_cast<int>(cx + r * std::cos(a)), static_cast<int>(cy + r * std::sin(a)));
      cv::line(img, p0, p1, bgr(kClutterRgb), std::max(2, static_cast<int>(r * 0.4)));
    }
    for (int i = 0; i < 8; ++i) {
      const int x = rng.below(canvas - 3), y = rng.below(canvas - 3);
      const int side = std::max(2, canvas / 48);
      cv::rectangle(img, cv::Rect(x, y, side, side), bgr(kClutterRgb), -1);
    }
  }
  if (pixelated) cv::resize(img, img, cv::Size(size, size), 0, 0, cv::INTER_NEAREST);
  std::vector<uchar> png;
  if (!cv::imencode(".png", img, png, {cv::IMWRITE_PNG_COMPRESSION, 6})) throw internal_error("PNG encoding failed");
  return std::string(png.begin(), png.end());
}

std::string describe_scene(const ShapeScene& s, const std::string& style, WorldRng& rng) {
  const std::string count = count_word(s.count);
  const std::string shapes = plural(s.shape, s.count);
  if (style == "broad") {
    switch (rng.below(5)) {
      case 0:
        return count + " " + s.size + " " + s.texture + " " + s.colour + " " + shapes + " at the " + s.position +
               " on a " + s.background + " background";
      case 1: return "a picture of " + count + " " + s.colour + " " + shapes + " at the " + s.position;
      case 2: return count + " " + s.size + " " + shapes + " on a " + s.background + " background";
      case 3: return s.texture + " " + s.colour + " " + shapes + ", " + count + " of them, at the " + s.position;
      default:
        return s.colour + " " + shapes + " on a " + s.background + " background, " + s.size + " and " + s.texture;
    }
  }
  if (style != "narrow") throw invalid_argument("unknown caption style '" + style + "' (broad or narrow)");
  static const std::map<std::string, std::string> where = {{"left", "on the left side"},
                                                           {"right", "on the right side"},
                                                           {"top", "near the top"},
                                                           {"bottom", "near the bottom"},
                                                           {"center", "in the middle"}};
  static const std::map<std::string, std::string> surface = {
      {"plain", "solid"}, {"striped", "with stripes"}, {"dotted", "with dots"}};
  static const std::vector<std::string> how_many = {"a single", "a pair of", "three", "four"};
  const std::string n = how_many[static_cast<size_t>(s.count - 1)];
  const std::string big = s.size == "large" ? "big" : "tiny";
  if (rng.below(2) == 0) {
    return std::string(s.count <= 2 ? "There is " : "There are ") + n + " " + big + " " + s.colour + " " + shapes +
           " " + where.at(s.position) + ", " + surface.at(s.texture) + ", over a " + s.background + " backdrop.";
  }
  return "An image showing " + n + " " + s.colour + " " + shapes + " " + where.at(s.position) + " over " +
         s.background + ".";
}

ShapesWorld make_shapes_world(const std::string& out_in, const ShapesWorldOptions& o, const ShapesWorldProgress& progress) {
  if (o.n < 1) throw invalid_argument("--n must be at least 1, got " + std::to_string(o.n));
  if (o.class_images < 1) throw invalid_argument("class_images must be at least 1");
  if (o.retrieval_images < 1) throw invalid_argument("retrieval_images must be at least 1");
  for (const auto& v : o.variants) {
    if (std::find(kVariants.begin(), kVariants.end(), v) == kVariants.end()) {
      throw invalid_argument("unknown variant '" + v + "' (test, v2, a, r, sketch)");
    }
  }
  std::error_code ec;
  fs::create_directories(out_in, ec);
  if (ec) throw invalid_argument("cannot create " + out_in + ": " + ec.message());
  const std::string out = fs::canonical(out_in).string();  // the suite names absolute paths
  ShapesWorld world;
  const int refine_n = o.refine_images > 0 ? o.refine_images : std::max(1, o.n / 4);
  ImageCounter counter{progress};
  counter.total = int64_t{o.n} + refine_n + o.retrieval_images;
  for (const auto& variant : o.variants) {
    for (const auto& attribute : shape_attributes()) {
      if (variant == "sketch" && attribute == "texture") continue;
      counter.total += static_cast<int64_t>(shape_attribute_values(attribute).size()) * o.class_images;
    }
  }
  world.images +=
      write_caption_set(out, "pretrain", o.n, 3, "broad", mix(o.seed, 1), o.image_size, &world.pretrain, counter);
  world.images +=
      write_caption_set(out, "refine", refine_n, 2, "narrow", mix(o.seed, 2), o.image_size, &world.refine, counter);
  world.images += write_caption_set(out, "retrieval", o.retrieval_images, 2, "narrow", mix(o.seed, 3), o.image_size,
                                    &world.retrieval, counter);

  json tasks = json::array();
  {
    PartWriter part(out, "classes");
    for (size_t vi = 0; vi < o.variants.size(); ++vi) {
      const std::string& variant = o.variants[vi];
      for (size_t ai = 0; ai < shape_attributes().size(); ++ai) {
        const std::string& attribute = shape_attributes()[ai];
        if (variant == "sketch" && attribute == "texture") continue;  // outlines have no texture
        for (const auto& value : shape_attribute_values(attribute)) {
          const std::string dir = part.dir() + "/" + variant + "/" + attribute + "/" + value;
          fs::create_directories(dir);
          for (int i = 0; i < o.class_images; ++i) {
            // Every (variant, attribute, value) draws from its own seed: v2 is
            // a fresh sample of the test distribution.
            WorldRng rng(mix(mix(o.seed, fnv1a(variant + "/" + attribute + "/" + value)), static_cast<uint64_t>(i)));
            const ShapeScene scene = sample_scene(rng, variant, attribute, value);
            char file[32];
            std::snprintf(file, sizeof file, "%04d.png", i);
            write_bytes(dir + "/" + file, render_scene_png(scene, o.image_size, rng.next()));
            ++world.images;
            counter.wrote_one();
          }
        }
        tasks.push_back({{"name", attribute + "-" + variant},
                         {"kind", "zeroshot"},
                         {"data", "folder:" + out + "/classes/" + variant + "/" + attribute},
                         {"prompt", shape_attribute_prompt(attribute)}});
      }
    }
    part.commit();
  }
  tasks.push_back({{"name", "retrieval"}, {"kind", "retrieval"}, {"data", world.retrieval}});
  world.suite_path = out + "/suite.json";
  write_json(world.suite_path, {{"name", "shapes"}, {"tasks", tasks}});
  write_json(out + "/world.json", {{"generator", "refinery-model make-data shapes"},
                                   {"seed", o.seed},
                                   {"n", o.n},
                                   {"image_size", o.image_size},
                                   {"refine_images", refine_n},
                                   {"retrieval_images", o.retrieval_images},
                                   {"class_images", o.class_images},
                                   {"variants", o.variants},
                                   {"pretrain", world.pretrain},
                                   {"refine", world.refine},
                                   {"retrieval", world.retrieval},
                                   {"suite", world.suite_path},
                                   {"images", world.images}});
  return world;
}

}  // namespace refinery
