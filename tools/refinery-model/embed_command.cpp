// `refinery-model embed`: embeddings of texts or images, as JSON or a
// .safetensors file. Only builds with the I/O front ends.
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/embedding/embedder.h"
#include "core/runtime/torch_runtime.h"
#include "core/safetensors/safetensors.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct EmbedParams {
  std::string checkpoint, texts_file, output;
  std::vector<std::string> images;
  bool normalize = false, no_truncate = false;
  int batch = 64;
  std::string precision = "fp32";
};

int run_embed(const EmbedParams& p, const CommonParams& common) {
  if (p.texts_file.empty() == p.images.empty()) throw invalid_argument("give exactly one of --texts FILE.json or --images IMG...");
  setup_runtime(common);
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common));
  EmbedderOptions o;
  o.batch_size = p.batch;
  o.precision = parse_inference_precision(p.precision);
  o.normalize = p.normalize;
  o.truncate = !p.no_truncate;
  Embedder embedder(model, resolve_device(common.device), o);
  at::Tensor embeddings;
  json items;
  if (!p.texts_file.empty()) {
    const auto texts = read_texts_file(p.texts_file);
    if (texts.empty()) throw invalid_argument(p.texts_file + ": no texts");
    ProgressBar bar(static_cast<int64_t>(texts.size()), progress_options(common, "embedding texts", "texts"));
    embeddings = embedder.embed_texts(texts, [&bar](int64_t done) { bar.update(done); });
    bar.finish();
    items = texts;
  } else {
    ProgressBar bar(static_cast<int64_t>(p.images.size()), progress_options(common, "embedding images", "images"));
    embeddings = embedder.embed_image_files(p.images, [&bar](int64_t done) { bar.update(done); });
    bar.finish();
    items = p.images;
  }
  if (!p.output.empty()) {
    SafetensorsWriter w;
    write_tensor(w, "embeddings", embeddings);
    w.set_metadata("checkpoint", p.checkpoint);
    w.set_metadata("normalized", p.normalize ? "true" : "false");
    w.set_metadata("items", items.dump());
    w.write(p.output);
    if (!common.quiet) std::fprintf(stderr, "refinery-model: wrote %lld embeddings to %s\n",
                                    static_cast<long long>(embeddings.size(0)), p.output.c_str());
  } else {
    std::cout << json{{"embeddings", matrix_json(embeddings)}}.dump() << "\n";
  }
  return 0;
}

}  // namespace

void add_embed_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<EmbedParams>();
  EmbedParams& emb = *params;
  CommonParams& common = command.common;
  auto* emb_cmd = app.add_subcommand("embed", "Embed texts or images");
  emb_cmd->add_option("--checkpoint", emb.checkpoint, "CKPT")->required();
  emb_cmd->add_option("--texts", emb.texts_file, "FILE.json, a JSON array of strings");
  emb_cmd->add_option("--images", emb.images, "IMG...");
  emb_cmd->add_option("--output", emb.output, "Write `embeddings` [N, D] float32 to this .safetensors");
  emb_cmd->add_option("--batch", emb.batch, "Items per forward pass")->capture_default_str();
  emb_cmd->add_option("--precision", emb.precision, "fp32, bf16 (autocast: bf16 matmuls, fp32 weights) or int8 (linear layers quantized dynamically; CPU)")
      ->capture_default_str();
  emb_cmd->add_flag("--normalize", emb.normalize, "L2-normalise the embeddings");
  emb_cmd->add_flag("--no-truncate", emb.no_truncate, "Reject over-long texts instead of truncating");
  add_common(emb_cmd, common, true);
  emb_cmd->callback([&command, params] {
    command.run = [&command, params] { return run_embed(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
