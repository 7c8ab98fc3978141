// `refinery-model match`: for each image, the captions the model scores
// highest. Only builds with the I/O front ends.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/embedding/embedder.h"
#include "core/runtime/torch_runtime.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct MatchParams {
  std::string checkpoint, texts_file;
  std::vector<std::string> images;
  int top = 1;
  bool json_output = false;
};

// For each image, the captions the model scores highest (softmax over the
// captions with the model's logit scale, as CLIP's zero-shot does).
int run_match(const MatchParams& p, const CommonParams& common) {
  if (p.images.empty()) throw invalid_argument("no images given (--images IMG...)");
  setup_runtime(common);
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common));
  EmbedderOptions o;
  o.normalize = true;
  Embedder embedder(model, resolve_device(common.device), o);
  const auto texts = read_texts_file(p.texts_file);
  if (texts.empty()) throw invalid_argument(p.texts_file + ": no texts");
  const auto text_emb = embedder.embed_texts(texts);
  const auto image_emb = embedder.embed_image_files(p.images);
  const double scale = model->logit_scale.exp().item<double>();
  const auto probs = (scale * image_emb.matmul(text_emb.t())).softmax(1);
  const int k = std::max(1, std::min<int>(p.top, static_cast<int>(texts.size())));
  const auto top = probs.topk(k, 1);
  const auto values = std::get<0>(top), indices = std::get<1>(top);
  for (size_t i = 0; i < p.images.size(); ++i) {
    json matches = json::array();
    for (int j = 0; j < k; ++j) {
      const int64_t t = indices[i][j].item<int64_t>();
      matches.push_back({{"text", texts[t]}, {"index", t}, {"probability", values[i][j].item<double>()}});
    }
    if (p.json_output) {
      std::cout << json{{"image", p.images[i]}, {"matches", matches}}.dump() << "\n";
    } else {
      const std::string name = p.images[i].substr(p.images[i].find_last_of('/') + 1);
      std::printf("%-20s -> \"%s\" (p=%.3f)\n", name.c_str(), matches[0]["text"].get<std::string>().c_str(),
                  matches[0]["probability"].get<double>());
      for (int j = 1; j < k; ++j) {
        std::printf("%-20s    \"%s\" (p=%.3f)\n", "", matches[j]["text"].get<std::string>().c_str(),
                    matches[j]["probability"].get<double>());
      }
    }
  }
  return 0;
}

}  // namespace

void add_match_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<MatchParams>();
  MatchParams& match = *params;
  CommonParams& common = command.common;
  auto* match_cmd = app.add_subcommand("match", "For each image, print the best-matching caption");
  match_cmd->add_option("--checkpoint", match.checkpoint, "CKPT")->required();
  match_cmd->add_option("--texts", match.texts_file, "FILE.json, candidate captions")->required();
  match_cmd->add_option("--images", match.images, "IMG...")->required();
  match_cmd->add_option("--top", match.top, "Captions to show per image")->capture_default_str();
  match_cmd->add_flag("--json", match.json_output, "One JSON object per image");
  add_common(match_cmd, common, true);
  match_cmd->callback([&command, params] {
    command.run = [&command, params] { return run_match(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
