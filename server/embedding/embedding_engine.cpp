#include "server/embedding_engine.h"

#include <torch/torch.h>

#include "core/bpe_tokenizer.h"
#include "core/error.h"
#include "core/image_decoder.h"
#include "core/image_preprocessor.h"
#include "server/model_registry.h"
#include "server/worker_pool.h"

namespace refinery {
namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

const ImagePreprocessor& preprocessor_for(int size) {
  // One per image size, built once: the LUTs are per-size-independent but
  // options carry the size.
  static std::mutex mu;
  static std::map<int, std::unique_ptr<ImagePreprocessor>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& p = cache[size];
  if (!p) {
    ImagePreprocessorOptions o;
    o.size = size;
    p = std::make_unique<ImagePreprocessor>(o);
  }
  return *p;
}

}  // namespace

EmbeddingEngine::EmbeddingEngine(ModelRegistry& registry, WorkerPool& pool, BatcherConfig config,
                                 std::function<void(const BatchStats&)> on_batch)
    : registry_(registry), pool_(pool), config_(config), on_batch_(std::move(on_batch)) {
  config_.max_wait_ms = config_.wait_ms_for(registry_.device());
}

EmbeddingEngine::~EmbeddingEngine() { shutdown(); }

void EmbeddingEngine::shutdown() {
  std::map<std::pair<std::string, Modality>, std::unique_ptr<EmbeddingBatcher>> batchers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    batchers.swap(batchers_);
  }
  for (auto& [key, b] : batchers) b->stop();
}

EmbeddingBatcher& EmbeddingEngine::batcher(const std::string& ref, Modality modality) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) throw failed_precondition("the server is shutting down");
  auto& b = batchers_[{ref, modality}];
  if (!b) {
    EmbeddingBatcherOptions o;
    o.max_batch = modality == Modality::kText ? config_.max_batch_texts : config_.max_batch_images;
    o.max_wait_ms = config_.max_wait_ms;
    o.max_queue_items = config_.max_queue_items;
    b = std::make_unique<EmbeddingBatcher>(ref, modality, o, registry_, device_mutex_, on_batch_);
  }
  return *b;
}

std::map<std::string, int> EmbeddingEngine::queue_depths() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, int> out;
  for (const auto& [key, b] : batchers_) out[key.first + "/" + modality_name(key.second)] = b->queued_items();
  return out;
}

EmbedOutput EmbeddingEngine::run(const std::string& ref, Modality modality, at::Tensor inputs,
                                 const CallControl& control, double preprocess_ms) {
  auto future = batcher(ref, modality).submit(std::move(inputs), control);
  BatchResult r = future.get();  // rethrows the batch's error, if any
  EmbedOutput out;
  out.model_ref = ref;
  out.model = registry_.acquire(ref);
  out.embeddings = std::move(r.embeddings);
  out.timing.preprocess_ms = preprocess_ms;
  out.timing.queue_ms = r.queue_ms;
  out.timing.inference_ms = r.inference_ms;
  out.timing.batch_size = r.batch_size;
  return out;
}

EmbedOutput EmbeddingEngine::embed_texts(const std::string& model, const std::vector<std::string>& texts, bool truncate,
                                         const CallControl& control) {
  if (texts.empty()) throw invalid_argument("no texts given");
  const ModelEntry entry = registry_.resolve(model);
  const auto start = Clock::now();
  const int ctx = entry.config.text.context_length;
  std::vector<int32_t> ids;
  try {
    ids = BpeTokenizer::default_instance().tokenize_batch(texts, ctx, truncate);
  } catch (const Error& e) {
    throw Error(e.code(), std::string("texts: ") + e.what());
  }
  auto tokens = torch::from_blob(ids.data(), {static_cast<int64_t>(texts.size()), ctx}, torch::kInt).clone();
  return run(entry.ref(), Modality::kText, std::move(tokens), control, ms_since(start));
}

EmbedOutput EmbeddingEngine::embed_images(const std::string& model, const std::vector<ImageInput>& images,
                                          const CallControl& control) {
  if (images.empty()) throw invalid_argument("no images given");
  const ModelEntry entry = registry_.resolve(model);
  const auto start = Clock::now();
  const int s = entry.config.vision.image_size;
  const ImagePreprocessor& pre = preprocessor_for(s);
  auto pixels = torch::empty({static_cast<int64_t>(images.size()), 3, s, s}, torch::kFloat);
  float* out = pixels.data_ptr<float>();
  pool_.run(images.size(), [&](size_t i) {
    const ImageInput& img = images[i];
    const std::string name = "images[" + std::to_string(i) + "]" + (img.name.empty() ? "" : " (" + img.name + ")");
    const auto* bytes = reinterpret_cast<const uint8_t*>(img.data->data());
    pre.preprocess(decode_image(bytes, img.data->size(), name), out + i * 3 * s * s);
  });
  return run(entry.ref(), Modality::kImage, std::move(pixels), control, ms_since(start));
}

}  // namespace refinery
