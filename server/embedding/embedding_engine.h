// The embedding path of the server: texts are tokenised, images decoded and
// preprocessed on the worker pool, then both go through the dynamic batcher
// of their (model, modality). Used by every service that needs embeddings
// (embed, classify, rank, index add and search).
//
// Per (model, modality) the engine keeps a lane: the batcher and, for
// images, the preprocessor for the model's input size, both built on first
// use. Lanes of models that were removed or unloaded are reclaimed (their
// threads stopped) once idle; a later call builds them anew.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <set>
#include <utility>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/embedding/embedding_batcher.h"
#include "server/runtime/server_config.h"

namespace refinery {

class ImagePreprocessor;
class MemoryBudget;
class ModelRegistry;
class WorkerPool;
struct ModelEntry;

struct ImageInput {
  const std::string* data = nullptr;  // encoded bytes, owned by the request
  std::string name;                   // for error messages
};

struct CallTiming {
  double preprocess_ms = 0, queue_ms = 0, inference_ms = 0;
  int batch_size = 0;
};

struct EmbedOutput {
  std::string model_ref;   // resolved "name@version"
  double logit_scale = 0;  // exp(logit_scale) of the weights that computed the embeddings
  at::Tensor embeddings;  // [n, D] float32 CPU, raw unless normalised by the caller
  CallTiming timing;
  int64_t tokens = 0;      // texts: their tokens, start and end markers included, as truncated
};

// Forward passes side by side on a device (BatcherConfig::parallel_passes
// resolved): one on a GPU; on a CPU the configured count, or 2 (auto) where
// the process has 2 or more intra-op threads.
int resolve_parallel_passes(const BatcherConfig& config, bool cpu, int threads);

class EmbeddingEngine {
 public:
  // Images decode on `pool`, each holding a lease of `decode_budget` for what
  // its header says the pixels take.
  EmbeddingEngine(ModelRegistry& registry, WorkerPool& pool, MemoryBudget& decode_budget, BatcherConfig config,
                  std::function<void(const BatchStats&)> on_batch = {});
  ~EmbeddingEngine();

  EmbedOutput embed_texts(const std::string& model, const std::vector<std::string>& texts, bool truncate,
                          const CallControl& control);
  EmbedOutput embed_images(const std::string& model, const std::vector<ImageInput>& images, const CallControl& control);
  // "" = the default model, "name" = its latest version, "name@N".
  ModelEntry resolve(const std::string& model) const;
  const BatcherConfig& config() const { return config_; }
  // Forward passes at once on the device (BatcherConfig::parallel_passes
  // resolved), and each one's intra-op threads (0: the process's count).
  int passes() const { return device_slots_->size(); }
  int pass_threads() const { return pass_threads_; }

  // "name@version/text" -> queued items, one per live lane.
  std::map<std::string, int> queue_depths();
  // The (model ref, modality name) of every batcher, after reclaiming those
  // of models unloaded or removed.
  std::set<std::pair<std::string, std::string>> lanes();
  void shutdown();  // drains the batchers

 private:
  struct Lane;
  // The lane of (model, modality), built if needed; first reclaims lanes of
  // removed or unloaded models. Caller holds mu_.
  std::shared_ptr<Lane> lane_locked(const ModelEntry& entry, Modality modality);
  void reclaim_locked();
  EmbedOutput run(const ModelEntry& entry, Modality modality, at::Tensor inputs, const CallControl& control,
                  double preprocess_ms);

  ModelRegistry& registry_;
  WorkerPool& pool_;
  MemoryBudget& decode_budget_;
  BatcherConfig config_;
  std::function<void(const BatchStats&)> on_batch_;
  std::unique_ptr<DeviceSlots> device_slots_;
  int pass_threads_ = 0;       // each pass's intra-op threads under load; 0: the process's count
  int lone_pass_threads_ = 0;  // a lone call's pass: every thread
  mutable std::mutex mu_;
  std::map<std::pair<std::string, Modality>, std::shared_ptr<Lane>> lanes_;
  uint64_t reclaimed_at_ = 0;  // the registry's unloads() when no lane was left to reclaim
  bool stopped_ = false;
};

}  // namespace refinery
