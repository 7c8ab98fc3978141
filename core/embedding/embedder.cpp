#include "core/embedding/embedder.h"

#include <torch/torch.h>

#include "core/base/error.h"
#include "core/embedding/image_batch_reader.h"
#include "core/runtime/autocast_guard.h"

namespace refinery {

Embedder::Embedder(ClipModel model, c10::Device device, EmbedderOptions options)
    : model_(std::move(model)), device_(device), options_(options), preprocessor_([&] {
        ImagePreprocessorOptions o;
        o.size = model_->config().vision.image_size;
        return o;
      }()) {
  if (options_.batch_size <= 0) throw invalid_argument("batch size must be positive");
  check_inference_precision(options_.precision, device_);
  model_->to(device_);
  model_->eval();
  // int8 packs the model's own linear layers: every forward of this model
  // without gradients runs in int8 from now on (the caller's handle too).
  if (options_.precision == InferencePrecision::kInt8) model_->quantize_int8();
}

at::Tensor Embedder::tokenize(const std::vector<std::string>& texts) const {
  const int ctx = model_->config().text.context_length;
  auto ids = BpeTokenizer::default_instance().tokenize_batch(texts, ctx, options_.truncate);
  return torch::from_blob(ids.data(), {static_cast<int64_t>(texts.size()), ctx}, torch::kInt).clone();
}

at::Tensor Embedder::embed_tokens(const at::Tensor& tokens, const EmbedProgress& progress) {
  torch::InferenceMode guard;
  AutocastGuard autocast(device_.type(), options_.precision == InferencePrecision::kBf16);
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < tokens.size(0); i += options_.batch_size) {
    auto batch = tokens.narrow(0, i, std::min<int64_t>(options_.batch_size, tokens.size(0) - i)).to(device_);
    parts.push_back(model_->encode_text(batch).to(torch::kCPU, torch::kFloat));
    if (progress) progress(i + batch.size(0));
  }
  auto out = parts.empty() ? torch::empty({0, model_->config().embed_dim}) : torch::cat(parts);
  return options_.normalize ? torch::nn::functional::normalize(out, torch::nn::functional::NormalizeFuncOptions().dim(1))
                            : out;
}

at::Tensor Embedder::embed_pixels(const at::Tensor& pixels) {
  torch::InferenceMode guard;
  AutocastGuard autocast(device_.type(), options_.precision == InferencePrecision::kBf16);
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < pixels.size(0); i += options_.batch_size) {
    auto batch = pixels.narrow(0, i, std::min<int64_t>(options_.batch_size, pixels.size(0) - i)).to(device_);
    parts.push_back(model_->encode_image(batch).to(torch::kCPU, torch::kFloat));
  }
  auto out = parts.empty() ? torch::empty({0, model_->config().embed_dim}) : torch::cat(parts);
  return options_.normalize ? torch::nn::functional::normalize(out, torch::nn::functional::NormalizeFuncOptions().dim(1))
                            : out;
}

at::Tensor Embedder::embed_texts(const std::vector<std::string>& texts, const EmbedProgress& progress) {
  return embed_tokens(tokenize(texts), progress);
}

at::Tensor Embedder::embed_image_files(const std::vector<std::string>& paths, const EmbedProgress& progress) {
  // Workers decode the next batches while the model runs this one; memory
  // stays bounded by the prefetch window.
  ImageBatchReaderOptions o;
  o.batch_size = options_.batch_size;
  o.workers = options_.decode_workers;
  o.prefetch_batches = options_.prefetch_batches;
  o.preprocess = preprocessor_.options();
  ImageBatchReader reader(paths, o);
  std::vector<at::Tensor> parts;
  int64_t done = 0;
  for (at::Tensor pixels = reader.next(); pixels.defined(); pixels = reader.next()) {
    parts.push_back(embed_pixels(pixels));
    done += pixels.size(0);
    if (progress) progress(done);
  }
  return parts.empty() ? torch::empty({0, model_->config().embed_dim}) : torch::cat(parts);
}

}  // namespace refinery
