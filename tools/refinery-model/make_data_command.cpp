// `refinery-model make-data shapes OUT --n N --seed S [--variant V ...]`:
// the synthetic captioned world of core/synth/shapes_world.h, for
// pre-training, refining and evaluating without downloaded data.
#include <chrono>
#include <cstdio>
#include <memory>

#include "core/synth/shapes_world.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

struct MakeDataParams {
  std::string out;
  ShapesWorldOptions world;
};

int run_make_data(const MakeDataParams& p, const CommonParams& common) {
  const auto start = std::chrono::steady_clock::now();
  ProgressBar bar(0, progress_options(common, "drawing scenes", "images"));
  const ShapesWorld w = make_shapes_world(p.out, p.world, [&bar](int64_t done, int64_t total) {
    bar.set_total(total);
    bar.update(done);
  });
  bar.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("pretrain   %s\nrefine     %s\nretrieval  %s\nsuite      %s\n", w.pretrain.c_str(), w.refine.c_str(),
              w.retrieval.c_str(), w.suite_path.c_str());
  if (!common.quiet) {
    std::fprintf(stderr, "refinery-model: %lld images in %.1f s (seed %llu)\n", static_cast<long long>(w.images), seconds,
                 static_cast<unsigned long long>(p.world.seed));
  }
  return 0;
}

}  // namespace

void add_make_data_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<MakeDataParams>();
  auto* make = app.add_subcommand("make-data", "Generate a synthetic data set");
  make->require_subcommand(1);
  auto* shapes = make->add_subcommand(
      "shapes", "Drawn shape scenes with template captions (pre-train, refine, retrieval), class sets per attribute "
                "with shifted variants, and an evaluation suite");
  auto& w = params->world;
  shapes->add_option("out", params->out, "Output folder")->required();
  shapes->add_option("--n", w.n, "Pre-training images (3 broad captions each)")->check(CLI::PositiveNumber)->capture_default_str();
  shapes->add_option("--seed", w.seed, "Seed: the same seed writes the same files")->capture_default_str();
  shapes->add_option("--image-size", w.image_size, "Image side in pixels")->check(CLI::Range(32, 1024))->capture_default_str();
  shapes->add_option("--refine-images", w.refine_images, "Refine-set images, 2 narrow captions each (0: n / 4)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  shapes->add_option("--retrieval-images", w.retrieval_images, "Retrieval test images")->check(CLI::PositiveNumber)->capture_default_str();
  shapes->add_option("--class-images", w.class_images, "Images per class in each class set")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  shapes->add_option("--variant", w.variants,
                     "Class-set variants (repeatable or a,b): test, v2 (a fresh sample), a (small, occluded, "
                     "cluttered), r (pixelated renditions), sketch (outlines)")
      ->delimiter(',')
      ->check(CLI::IsMember({"test", "v2", "a", "r", "sketch"}))
      ->capture_default_str();
  add_common(shapes, command.common, false);
  shapes->callback([&command, params] {
    command.run = [&command, params] { return run_make_data(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
