// `refinery-model preprocess`: images decoded and preprocessed as CLIP does,
// written as float32 pixels. Only builds with the I/O front ends.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/image/image_decoder.h"
#include "core/image/image_preprocessor.h"
#include "core/safetensors/safetensors.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct PreprocessParams {
  std::vector<std::string> images;
  std::string output;
  int size = 224;
};

int run_preprocess(const PreprocessParams& p) {
  if (p.images.empty()) throw invalid_argument("no images given");
  ImagePreprocessorOptions o;
  o.size = p.size;
  ImagePreprocessor pre(o);
  const int64_t n = static_cast<int64_t>(p.images.size());
  std::vector<float> pixels(static_cast<size_t>(n) * 3 * p.size * p.size);
  for (int64_t i = 0; i < n; ++i) pre.preprocess(decode_image_file(p.images[i]), pixels.data() + i * 3 * p.size * p.size);
  SafetensorsWriter w;
  w.add_float32("pixels", {n, 3, p.size, p.size}, pixels.data());
  w.set_metadata("images", json(p.images).dump());
  w.write(p.output);
  return 0;
}

}  // namespace

void add_preprocess_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<PreprocessParams>();
  PreprocessParams& pre = *params;
  auto* pre_cmd = app.add_subcommand("preprocess", "Decode and preprocess images as CLIP does");
  pre_cmd->add_option("images", pre.images, "IMG...")->required();
  pre_cmd->add_option("--size", pre.size, "Output side in pixels")->capture_default_str();
  pre_cmd->add_option("--output", pre.output, "Write `pixels` [N, 3, S, S] float32 here")->required();
  pre_cmd->callback([&command, params] { command.run = [params] { return run_preprocess(*params); }; });
}

}  // namespace refinery::model_tool
