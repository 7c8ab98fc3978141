// The embedding path of the server: texts are tokenised, images decoded and
// preprocessed on the worker pool, then both go through the dynamic batcher
// of their (model, modality). Used by every service that needs embeddings
// (embed, classify, rank, index add and search).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/embedding_batcher.h"
#include "server/server_config.h"

namespace refinery {

class ModelRegistry;
class WorkerPool;
struct LoadedModel;

struct ImageInput {
  const std::string* data = nullptr;  // encoded bytes, owned by the request
  std::string name;                   // for error messages
};

struct CallTiming {
  double preprocess_ms = 0, queue_ms = 0, inference_ms = 0;
  int batch_size = 0;
};

struct EmbedOutput {
  std::string model_ref;  // resolved "name@version"
  std::shared_ptr<LoadedModel> model;
  at::Tensor embeddings;  // [n, D] float32 CPU, raw unless normalised by the caller
  CallTiming timing;
};

class EmbeddingEngine {
 public:
  EmbeddingEngine(ModelRegistry& registry, WorkerPool& pool, BatcherConfig config,
                  std::function<void(const BatchStats&)> on_batch = {});
  ~EmbeddingEngine();

  EmbedOutput embed_texts(const std::string& model, const std::vector<std::string>& texts, bool truncate,
                          const CallControl& control);
  EmbedOutput embed_images(const std::string& model, const std::vector<ImageInput>& images, const CallControl& control);

  // "name@version/text" -> queued items.
  std::map<std::string, int> queue_depths() const;
  void shutdown();  // drains the batchers

 private:
  EmbeddingBatcher& batcher(const std::string& ref, Modality modality);
  EmbedOutput run(const std::string& ref, Modality modality, at::Tensor inputs, const CallControl& control,
                  double preprocess_ms);

  ModelRegistry& registry_;
  WorkerPool& pool_;
  BatcherConfig config_;
  std::function<void(const BatchStats&)> on_batch_;
  std::mutex device_mutex_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, Modality>, std::unique_ptr<EmbeddingBatcher>> batchers_;
  bool stopped_ = false;
};

}  // namespace refinery
