// Offline embedding: texts and image files in, raw projected features out,
// in bounded batches. Image files decode on worker threads while the model
// runs (image_batch_reader.h); used by `refinery-model` and evaluation (the
// server's serving path has its own batcher).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "core/image/image_preprocessor.h"
#include "core/model/clip_model.h"
#include "core/runtime/inference_precision.h"
#include "core/text/bpe_tokenizer.h"

namespace refinery {

struct EmbedderOptions {
  int batch_size = 64;      // items per forward pass (bounds memory)
  bool normalize = false;   // L2-normalise the output rows
  bool truncate = true;     // over-long texts: truncate (EOT last) or reject
  int decode_workers = 0;   // image decode threads; 0 = all cores
  int prefetch_batches = 2; // image batches decoded ahead of the model
  // bf16: autocast; int8: the model's linear layers are quantized in place
  // (inference_precision.h)
  InferencePrecision precision = InferencePrecision::kFp32;
};

// Called after each batch with the rows embedded so far; may throw to stop.
using EmbedProgress = std::function<void(int64_t done)>;

class Embedder {
 public:
  Embedder(ClipModel model, c10::Device device, EmbedderOptions options = {});

  // [N, 77] int32 tokens; errors name the item index.
  at::Tensor tokenize(const std::vector<std::string>& texts) const;

  // [N, D] CPU float. An image that fails to decode throws, naming the file.
  at::Tensor embed_texts(const std::vector<std::string>& texts, const EmbedProgress& progress = {});
  at::Tensor embed_image_files(const std::vector<std::string>& paths, const EmbedProgress& progress = {});
  at::Tensor embed_tokens(const at::Tensor& tokens, const EmbedProgress& progress = {});
  at::Tensor embed_pixels(const at::Tensor& pixels);

  const EmbedderOptions& options() const { return options_; }
  c10::Device device() const { return device_; }

  ClipModel& model() { return model_; }
  const ImagePreprocessor& preprocessor() const { return preprocessor_; }

 private:
  ClipModel model_;
  c10::Device device_;
  EmbedderOptions options_;
  ImagePreprocessor preprocessor_;
};

}  // namespace refinery
