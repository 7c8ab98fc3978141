// Offline embedding: texts and image files in, raw projected features out,
// in bounded batches. Tokenises and decodes/preprocesses on LibTorch's
// intra-op pool; used by `refinery-model` (the server has its own batcher).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "core/image/image_preprocessor.h"
#include "core/model/clip_model.h"
#include "core/text/bpe_tokenizer.h"

namespace refinery {

struct EmbedderOptions {
  int batch_size = 64;      // items per forward pass (bounds memory)
  bool normalize = false;   // L2-normalise the output rows
  bool truncate = true;     // over-long texts: truncate (EOT last) or reject
};

class Embedder {
 public:
  Embedder(ClipModel model, c10::Device device, EmbedderOptions options = {});

  // [N, 77] int32 tokens; errors name the item index.
  at::Tensor tokenize(const std::vector<std::string>& texts) const;
  // [N, 3, S, S] normalised pixels; errors name the file.
  at::Tensor preprocess_files(const std::vector<std::string>& paths) const;

  at::Tensor embed_texts(const std::vector<std::string>& texts);       // [N, D] CPU float
  at::Tensor embed_image_files(const std::vector<std::string>& paths);  // [N, D] CPU float
  at::Tensor embed_tokens(const at::Tensor& tokens);
  at::Tensor embed_pixels(const at::Tensor& pixels);

  ClipModel& model() { return model_; }
  const ImagePreprocessor& preprocessor() const { return preprocessor_; }

 private:
  ClipModel model_;
  c10::Device device_;
  EmbedderOptions options_;
  ImagePreprocessor preprocessor_;
};

}  // namespace refinery
