#include "server/embedding/embedding_engine.h"

#include <torch/torch.h>

#include "core/base/clock.h"
#include "core/base/error.h"
#include "core/image/image_decoder.h"
#include "core/image/image_preprocessor.h"
#include "core/runtime/torch_runtime.h"
#include "core/text/bpe_tokenizer.h"
#include "server/models/model_registry.h"
#include "server/runtime/memory_budget.h"
#include "server/runtime/worker_pool.h"

namespace refinery {
namespace {

}  // namespace

int resolve_parallel_passes(const BatcherConfig& config, bool cpu, int threads) {
  if (!cpu) return 1;
  return config.parallel_passes > 0 ? config.parallel_passes : (threads >= 2 ? 2 : 1);
}

struct EmbeddingEngine::Lane {
  std::unique_ptr<EmbeddingBatcher> batcher;
  std::unique_ptr<ImagePreprocessor> preprocessor;  // images only
};

EmbeddingEngine::EmbeddingEngine(ModelRegistry& registry, WorkerPool& pool, MemoryBudget& decode_budget,
                                 BatcherConfig config, std::function<void(const BatchStats&)> on_batch)
    : registry_(registry), pool_(pool), decode_budget_(decode_budget), config_(config), on_batch_(std::move(on_batch)) {
  const int threads = at::get_num_threads();  // the process's count (configure_runtime)
  const int passes = resolve_parallel_passes(config_, resolve_device(registry_.device()).is_cpu(), threads);
  if (passes > 1) {
    pass_threads_ = std::max(1, threads / passes);
    lone_pass_threads_ = threads;
  }
  device_slots_ = std::make_unique<DeviceSlots>(passes);
}

EmbeddingEngine::~EmbeddingEngine() { shutdown(); }

void EmbeddingEngine::shutdown() {
  std::map<std::pair<std::string, Modality>, std::shared_ptr<Lane>> lanes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    lanes.swap(lanes_);
  }
  for (auto& [key, lane] : lanes) lane->batcher->stop();
}

ModelEntry EmbeddingEngine::resolve(const std::string& model) const { return registry_.resolve(model); }

void EmbeddingEngine::reclaim_locked() {
  const uint64_t unloads = registry_.unloads();
  if (unloads == reclaimed_at_) return;
  bool busy_left = false;
  for (auto it = lanes_.begin(); it != lanes_.end();) {
    bool loaded = false;
    try {
      loaded = registry_.is_loaded(it->first.first);
    } catch (const Error&) {  // removed from the registry
    }
    if (loaded) {
      ++it;
    } else if (it->second->batcher->idle()) {
      // Submits happen under mu_, so nothing can arrive before stop().
      it->second->batcher->stop();
      it = lanes_.erase(it);
    } else {
      busy_left = true;  // its queued calls reload the model; try again on a later call
      ++it;
    }
  }
  if (!busy_left) reclaimed_at_ = unloads;
}

std::shared_ptr<EmbeddingEngine::Lane> EmbeddingEngine::lane_locked(const ModelEntry& entry, Modality modality) {
  if (stopped_) throw failed_precondition("the server is shutting down");
  reclaim_locked();
  auto& lane = lanes_[{entry.ref(), modality}];
  if (!lane) {
    auto fresh = std::make_shared<Lane>();
    EmbeddingBatcherOptions o;
    // The device's batch is split over its passes: the items being computed
    // at once, and so the activations in memory, stay what one pass of
    // max_batch took. On a CPU the cost per item barely changes with the
    // batch size, and smaller batches even out the wait of the calls in
    // them (small 224 px model, 2 passes, 32 callers: p99/p50 1.74 with 16
    // per pass, 2.0-2.4 with 32).
    const int max_batch = modality == Modality::kText ? config_.max_batch_texts : config_.max_batch_images;
    const int passes = device_slots_->size();
    o.max_batch = (max_batch + passes - 1) / passes;
    o.max_wait_ms = config_.max_wait_ms;
    o.max_queue_items = config_.max_queue_items;
    o.bf16 = entry.precision == "bf16";  // int8 is in the model itself (the registry packs it at load)
    o.passes = passes;
    o.pass_threads = pass_threads_;
    o.lone_pass_threads = lone_pass_threads_;
    fresh->batcher = std::make_unique<EmbeddingBatcher>(entry.ref(), modality, o, registry_, *device_slots_, on_batch_);
    if (modality == Modality::kImage) {
      ImagePreprocessorOptions po;
      po.size = entry.config.vision.image_size;
      fresh->preprocessor = std::make_unique<ImagePreprocessor>(po);
    }
    lane = std::move(fresh);
  }
  return lane;
}

std::map<std::string, int> EmbeddingEngine::queue_depths() {
  std::lock_guard<std::mutex> lock(mu_);
  reclaim_locked();
  std::map<std::string, int> out;
  for (const auto& [key, lane] : lanes_) out[key.first + "/" + modality_name(key.second)] = lane->batcher->queued_items();
  return out;
}

std::set<std::pair<std::string, std::string>> EmbeddingEngine::lanes() {
  std::lock_guard<std::mutex> lock(mu_);
  reclaim_locked();
  std::set<std::pair<std::string, std::string>> out;
  for (const auto& [key, lane] : lanes_) out.insert({key.first, modality_name(key.second)});
  return out;
}

EmbedOutput EmbeddingEngine::run(const ModelEntry& entry, Modality modality, at::Tensor inputs,
                                 const CallControl& control, double preprocess_ms) {
  std::future<BatchResult> future;
  {
    std::lock_guard<std::mutex> lock(mu_);
    future = lane_locked(entry, modality)->batcher->submit(std::move(inputs), control);
  }
  BatchResult r = future.get();  // rethrows the batch's error, if any
  EmbedOutput out;
  out.model_ref = entry.ref();
  out.logit_scale = r.logit_scale;
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
  // Each row is <|startoftext|> ... <|endoftext|> and then zero padding; id
  // 0 is also a real token ("!"), so a row's length ends at its last non-zero.
  int64_t token_count = 0;
  for (size_t row = 0; row < texts.size(); ++row) {
    const int32_t* r = ids.data() + row * static_cast<size_t>(ctx);
    int len = ctx;
    while (len > 0 && r[len - 1] == 0) --len;
    token_count += len;
  }
  auto tokens = torch::from_blob(ids.data(), {static_cast<int64_t>(texts.size()), ctx}, torch::kInt).clone();
  EmbedOutput out = run(entry, Modality::kText, std::move(tokens), control, ms_since(start));
  out.tokens = token_count;
  return out;
}

EmbedOutput EmbeddingEngine::embed_images(const std::string& model, const std::vector<ImageInput>& images,
                                          const CallControl& control) {
  if (images.empty()) throw invalid_argument("no images given");
  const ModelEntry entry = registry_.resolve(model);
  const auto start = Clock::now();
  std::shared_ptr<Lane> lane;  // keeps the preprocessor alive even if the lane is reclaimed meanwhile
  {
    std::lock_guard<std::mutex> lock(mu_);
    lane = lane_locked(entry, Modality::kImage);
  }
  const ImagePreprocessor& pre = *lane->preprocessor;
  const int s = entry.config.vision.image_size;
  auto pixels = torch::empty({static_cast<int64_t>(images.size()), 3, s, s}, torch::kFloat);
  float* out = pixels.data_ptr<float>();
  pool_.run(images.size(), [&](size_t i) {
    const ImageInput& img = images[i];
    const std::string name = "images[" + std::to_string(i) + "]" + (img.name.empty() ? "" : " (" + img.name + ")");
    const auto* bytes = reinterpret_cast<const uint8_t*>(img.data->data());
    // The header says what the pixels will take; the decode waits until
    // that fits beside the others in flight.
    const auto lease = decode_budget_.acquire(decode_memory_bound(bytes, img.data->size(), name), name);
    pre.preprocess(decode_image(bytes, img.data->size(), name), out + i * 3 * s * s);
  });
  return run(entry, Modality::kImage, std::move(pixels), control, ms_since(start));
}

}  // namespace refinery
