// The synthetic shapes world: the same seed writes the same bytes; every
// caption agrees with what is measured from its image's pixels (count as
// connected components, colour, shape from the contour, size, position,
// texture, background); the class sets and the suite are complete; bad
// options are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "core/base/error.h"
#include "core/synth/shapes_world.h"
#include "support/fixture.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

std::map<std::string, std::string> files_under(const std::string& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    std::string rel = fs::relative(e.path(), root).string();
    std::string bytes = testing::read_file(e.path().string());
    // The suite and world files name the folder they are in.
    size_t at;
    while ((at = bytes.find(root)) != std::string::npos) bytes.replace(at, root.size(), "ROOT");
    out[rel] = bytes;
  }
  return out;
}

ShapesWorldOptions small_world(uint64_t seed) {
  ShapesWorldOptions o;
  o.n = 40;
  o.seed = seed;
  o.refine_images = 10;
  o.retrieval_images = 8;
  o.class_images = 2;
  return o;
}

TEST(ShapesWorld, TheSameSeedWritesTheSameFiles) {
  testing::TempDir a, b, c;
  make_shapes_world(a.path(), small_world(3));
  make_shapes_world(b.path(), small_world(3));
  make_shapes_world(c.path(), small_world(4));
  const auto fa = files_under(a.path()), fb = files_under(b.path()), fc = files_under(c.path());
  // 40 + 10 + 8 caption-set images, 2 a class in 5 variants (sketch without texture).
  int images = 0;
  for (const auto& [name, bytes] : fa) images += name.size() > 4 && name.substr(name.size() - 4) == ".png";
  EXPECT_EQ(images, 40 + 10 + 8 + 2 * (5 * 29 - 3));
  ASSERT_EQ(fa.size(), fb.size());
  for (const auto& [name, bytes] : fa) EXPECT_TRUE(fb.count(name) && fb.at(name) == bytes) << name;
  EXPECT_NE(fa.at("pretrain/captions.json"), fc.at("pretrain/captions.json"));
  EXPECT_NE(fa.at("pretrain/images/000000.png"), fc.at("pretrain/images/000000.png"));
  // No partial folders are left behind.
  for (const auto& e : fs::directory_iterator(a.path())) EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
}

// What the pixels of a plainly drawn scene say.
struct Measured {
  std::string shape, colour, size, texture, position, background;
  int count = 0;
};

std::string nearest(const cv::Vec3d& rgb, const std::map<std::string, cv::Vec3d>& palette) {
  std::string best;
  double best_d = 1e18;
  for (const auto& [name, c] : palette) {
    const double d = cv::norm(rgb - c);
    if (d < best_d) best_d = d, best = name;
  }
  return best;
}

Measured measure(const std::string& png_path) {
  cv::Mat bgr = cv::imread(png_path, cv::IMREAD_COLOR);
  EXPECT_FALSE(bgr.empty()) << png_path;
  auto rgb_at = [&](int y, int x) {
    const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
    return cv::Vec3d(p[2], p[1], p[0]);
  };
  Measured m;
  const cv::Vec3d bg = rgb_at(0, 0);
  m.background = nearest(bg, {{"black", {0, 0, 0}}, {"gray", {128, 128, 128}}, {"white", {255, 255, 255}}, {"brown", {110, 70, 40}}});
  cv::Mat mask(bgr.size(), CV_8U, cv::Scalar(0)), texture(bgr.size(), CV_8U, cv::Scalar(0));
  std::vector<cv::Vec3d> colours;
  for (int y = 0; y < bgr.rows; ++y) {
    for (int x = 0; x < bgr.cols; ++x) {
      const cv::Vec3d c = rgb_at(y, x);
      if (cv::norm(c - bg, cv::NORM_L1) <= 60) continue;
      mask.at<uchar>(y, x) = 255;
      if (cv::norm(c - cv::Vec3d(40, 40, 40), cv::NORM_L1) < 30) {
        texture.at<uchar>(y, x) = 255;
      } else {
        colours.push_back(c);
      }
    }
  }
  // Colour: the median of each channel over the non-texture pixels.
  cv::Vec3d median;
  for (int ch = 0; ch < 3; ++ch) {
    std::vector<double> v;
    for (const auto& c : colours) v.push_back(c[ch]);
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    median[ch] = v[v.size() / 2];
  }
  m.colour = nearest(median, {{"red", {220, 30, 30}},
                              {"green", {30, 180, 50}},
                              {"blue", {40, 70, 230}},
                              {"yellow", {240, 220, 30}},
                              {"purple", {150, 50, 200}},
                              {"orange", {250, 140, 20}}});
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  m.count = static_cast<int>(contours.size());
  const double side = bgr.cols;
  double cx = 0, cy = 0, extent = 0;
  std::map<std::string, int> shapes;
  for (const auto& c : contours) {
    const cv::Rect box = cv::boundingRect(c);
    cx += (box.x + box.width / 2.0) / side / m.count;
    cy += (box.y + box.height / 2.0) / side / m.count;
    cv::Point2f centre;
    float radius = 0;
    cv::minEnclosingCircle(c, centre, radius);
    extent = std::max(extent, radius / side);
    std::vector<cv::Point> hull, approx;
    cv::convexHull(c, hull);
    const double solidity = cv::contourArea(c) / cv::contourArea(hull);
    cv::approxPolyDP(c, approx, 0.03 * cv::arcLength(c, true), true);
    std::string shape = solidity < 0.8 ? "star"
                        : approx.size() == 3 ? "triangle"
                        : approx.size() == 4 ? "square"
                        : approx.size() <= 6 ? "hexagon"
                                             : "circle";
    shapes[shape]++;
  }
  m.shape = shapes.size() == 1 ? shapes.begin()->first : "mixed";
  m.size = extent < 0.08 ? "small" : "large";  // drawn at radius 0.055 or 0.105 of the side
  m.position = nearest(cv::Vec3d(cx, cy, 0), {{"left", {0.25, 0.5, 0}},
                                               {"right", {0.75, 0.5, 0}},
                                               {"top", {0.5, 0.25, 0}},
                                               {"bottom", {0.5, 0.75, 0}},
                                               {"center", {0.5, 0.5, 0}}});
  // Texture: none; or runs along rows (stripes) or short blobs (dots).
  int textured = cv::countNonZero(texture), longest = 0;
  for (int y = 0; y < texture.rows; ++y) {
    int run = 0;
    for (int x = 0; x < texture.cols; ++x) {
      run = texture.at<uchar>(y, x) ? run + 1 : 0;
      longest = std::max(longest, run);
    }
  }
  m.texture = textured < 0.03 * cv::countNonZero(mask) ? "plain" : longest > 8 ? "striped" : "dotted";
  return m;
}

// The values a caption names, per attribute (none where it names none).
std::map<std::string, std::string> named_in(const std::string& caption, bool narrow) {
  std::map<std::string, std::string> out;
  std::set<std::string> words;
  std::istringstream in(std::regex_replace(caption, std::regex("[.,]"), " "));
  for (std::string w; in >> w;) words.insert(w);
  for (const auto& attribute : shape_attributes()) {
    for (const auto& v : shape_attribute_values(attribute)) {
      if (words.count(v) || (attribute == "shape" && words.count(v + "s"))) out[attribute] = v;
    }
  }
  if (narrow) {
    out.erase("count");
    if (caption.find("a single") != std::string::npos) out["count"] = "one";
    if (caption.find("a pair of") != std::string::npos) out["count"] = "two";
    if (words.count("three")) out["count"] = "three";
    if (words.count("four")) out["count"] = "four";
    if (words.count("big")) out["size"] = "large";
    if (words.count("tiny")) out["size"] = "small";
    if (caption.find("middle") != std::string::npos) out["position"] = "center";
    if (words.count("stripes")) out["texture"] = "striped";
    if (words.count("dots")) out["texture"] = "dotted";
    if (words.count("solid")) out["texture"] = "plain";
  }
  return out;
}

TEST(ShapesWorld, EveryCaptionSaysWhatItsImageShows) {
  testing::TempDir dir;
  ShapesWorldOptions o = small_world(11);
  o.n = 120;
  o.refine_images = 40;
  o.image_size = 256;  // big enough to tell a small hexagon from a circle by its contour
  o.variants = {"test"};
  make_shapes_world(dir.path(), o);
  int checked = 0;
  std::map<std::string, std::set<std::string>> seen;  // attribute -> values met
  for (const std::string part : {"pretrain", "refine"}) {
    const json coco = read_json(dir / (part + "/captions.json"));
    std::map<int, std::string> file_of;
    for (const auto& im : coco["images"]) file_of[im["id"].get<int>()] = im["file_name"].get<std::string>();
    std::map<int, Measured> measured;
    for (const auto& [id, file] : file_of) measured[id] = measure(dir / (part + "/images/" + file));
    std::map<int, int> captions_of;
    for (const auto& a : coco["annotations"]) {
      const int id = a["image_id"].get<int>();
      captions_of[id]++;
      const std::string caption = a["caption"].get<std::string>();
      const Measured& m = measured.at(id);
      const std::map<std::string, std::string> truth = {
          {"shape", m.shape},       {"colour", m.colour},     {"size", m.size},
          {"texture", m.texture},   {"count", std::vector<std::string>{"one", "two", "three", "four"}.at(m.count - 1)},
          {"position", m.position}, {"background", m.background}};
      const auto named = named_in(caption, part == "refine");
      EXPECT_TRUE(named.count("shape")) << caption;
      for (const auto& [attribute, value] : named) {
        EXPECT_EQ(value, truth.at(attribute)) << attribute << " in '" << caption << "' (" << file_of[id] << ")";
        seen[attribute].insert(value);
        ++checked;
      }
    }
    for (const auto& [id, n] : captions_of) EXPECT_EQ(n, part == "pretrain" ? 3 : 2);
    // An image's captions are different sentences.
    std::map<int, std::set<std::string>> distinct;
    for (const auto& a : coco["annotations"]) distinct[a["image_id"].get<int>()].insert(a["caption"].get<std::string>());
    for (const auto& [id, s] : distinct) EXPECT_EQ(static_cast<int>(s.size()), captions_of[id]) << file_of[id];
  }
  EXPECT_GT(checked, 1000);
  for (const auto& attribute : shape_attributes()) {
    EXPECT_EQ(seen[attribute].size(), shape_attribute_values(attribute).size()) << attribute;
  }
}

TEST(ShapesWorld, ClassSetsHoldTheirClassAndTheSuiteNamesThemAll) {
  testing::TempDir dir;
  ShapesWorldOptions o = small_world(5);
  o.class_images = 3;
  o.image_size = 256;
  o.variants = {"test", "sketch"};
  const ShapesWorld w = make_shapes_world(dir.path(), o);
  const json suite = read_json(w.suite_path);
  EXPECT_EQ(suite["name"], "shapes");
  ASSERT_EQ(suite["tasks"].size(), 7u + 6u + 1u);  // sketch has no texture set
  for (const auto& t : suite["tasks"]) {
    if (t["kind"] == "retrieval") {
      EXPECT_EQ(t["data"], w.retrieval);
      continue;
    }
    const std::string folder = t["data"].get<std::string>().substr(std::string("folder:").size());
    const std::string attribute = fs::path(folder).filename().string();
    EXPECT_NE(t["prompt"].get<std::string>().find("{}"), std::string::npos);
    for (const auto& value : shape_attribute_values(attribute)) {
      int n = 0;
      for (const auto& e : fs::directory_iterator(folder + "/" + value)) {
        ++n;
        // Plainly drawn sets: the pixels show the class.
        if (folder.find("/test/") == std::string::npos || attribute == "count" || attribute == "texture") continue;
        const Measured m = measure(e.path().string());
        const std::map<std::string, std::string> got = {{"shape", m.shape},       {"colour", m.colour},
                                                        {"size", m.size},         {"position", m.position},
                                                        {"background", m.background}};
        EXPECT_EQ(got.at(attribute), value) << e.path();
      }
      EXPECT_EQ(n, 3) << folder << "/" << value;
    }
  }
}

TEST(ShapesWorld, BadOptionsAreRefused) {
  testing::TempDir dir;
  ShapesWorldOptions o = small_world(1);
  o.variants = {"test", "cartoon"};
  try {
    make_shapes_world(dir.path(), o);
    FAIL() << "accepted an unknown variant";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cartoon"), std::string::npos) << e.what();
  }
  o = small_world(1);
  o.n = 0;
  EXPECT_THROW(make_shapes_world(dir.path(), o), Error);
  EXPECT_TRUE(fs::is_empty(dir.path()));  // nothing written for refused options
}

}  // namespace
}  // namespace refinery
