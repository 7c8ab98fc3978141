// A synthetic captioned world for experiments without downloadable weights:
// scenes of drawn shapes (shape, colour, size, texture, count, position,
// background) with captions written from templates, deterministic for a seed.
//
// `make_shapes_world(OUT)` writes
//   OUT/pretrain/   coco: layout, broad captions (3 an image): pre-training
//   OUT/refine/     coco: layout, a narrower, differently worded caption
//                   distribution (2 an image): post-pre-training, the role
//                   COCO plays in the paper
//   OUT/retrieval/  coco: layout, a fresh sample with refine-style captions
//   OUT/classes/VARIANT/ATTRIBUTE/VALUE/*.png   class folders, one set per
//                   attribute (the analog of the paper's classification
//                   sets) and variant: test (a fresh sample), v2 (another
//                   one), a (small, occluded objects among clutter), r (other
//                   renderings: pixelated, on gradients), sketch (outlines)
//   OUT/suite.json  an evaluation suite over all of them (eval_suite.h)
//   OUT/world.json  what was generated and with which options
// Images are PNG, `image_size` pixels square; objects never touch, so a
// scene's count is its connected components.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace refinery {

struct ShapeScene {
  std::string shape = "circle";     // circle, triangle, square, hexagon, star
  std::string colour = "red";       // red, green, blue, yellow, purple, orange
  std::string size = "large";       // small, large
  std::string texture = "plain";    // plain, striped, dotted
  int count = 1;                    // 1..4
  std::string position = "center";  // left, right, top, bottom, center
  std::string background = "black"; // black, gray, white, brown
  std::string variant = "test";     // how it is drawn: test/v2 (plainly), a, r, sketch
};

// The attributes in a fixed order, and their values (count: one..four).
const std::vector<std::string>& shape_attributes();
const std::vector<std::string>& shape_attribute_values(const std::string& attribute);
std::string scene_attribute(const ShapeScene& scene, const std::string& attribute);
// The zero-shot prompt of an attribute's class set, "{}" the value.
std::string shape_attribute_prompt(const std::string& attribute);

// Deterministic draws from one seed (SplitMix64): the same on every
// platform, unlike std:: distributions.
class WorldRng {
 public:
  explicit WorldRng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  int below(int n);  // [0, n)
  double uniform();  // [0, 1)
  template <typename T>
  const T& pick(const std::vector<T>& v) { return v[static_cast<size_t>(below(static_cast<int>(v.size())))]; }

 private:
  uint64_t state_;
};

// A random scene; `fixed_attribute` (if not empty) is set to `fixed_value`.
ShapeScene sample_scene(WorldRng& rng, const std::string& variant, const std::string& fixed_attribute = "",
                        const std::string& fixed_value = "");

// The scene drawn as an encoded PNG, `size` pixels square. `seed` places the
// objects (and the clutter of variant a).
std::string render_scene_png(const ShapeScene& scene, int size, uint64_t seed);

// Captions: "broad" (pre-training) or "narrow" (refine and retrieval).
std::string describe_scene(const ShapeScene& scene, const std::string& style, WorldRng& rng);

struct ShapesWorldOptions {
  int n = 2000;                 // pre-training images
  uint64_t seed = 0;
  int image_size = 128;
  int refine_images = 0;        // 0: n / 4
  int retrieval_images = 200;
  int class_images = 10;        // per class, per attribute and variant
  std::vector<std::string> variants = {"test", "v2", "a", "r", "sketch"};
};

struct ShapesWorld {
  std::string pretrain, refine, retrieval;  // coco:ANN:IMAGES specs
  std::string suite_path;
  int64_t images = 0;  // written in all
};

// Called after every image written, with the images written and the total.
using ShapesWorldProgress = std::function<void(int64_t done, int64_t total)>;

// Writes the world under `out_dir` (created; an existing world there is
// replaced part by part). INVALID_ARGUMENT for bad options.
ShapesWorld make_shapes_world(const std::string& out_dir, const ShapesWorldOptions& options,
                              const ShapesWorldProgress& progress = {});

}  // namespace refinery
