// refinery.v1.EmbeddingService: embeddings, zero-shot classification and
// ranking over the EmbeddingEngine.
#pragma once

#include "refinery/v1/embedding.grpc.pb.h"
#include "server/runtime/call_guard.h"
#include "server/embedding/class_embedding_cache.h"
#include "server/runtime/server_config.h"

namespace refinery {

class EmbeddingEngine;
class EmbeddingMetrics;
struct CallTiming;

// Request limits shared by the services that take lists.
void check_request_size(size_t items, int limit, const char* what);
void fill_timing(const CallTiming& t, double total_ms, v1::Timing* out);

class EmbeddingServiceImpl final : public v1::EmbeddingService::Service {
 public:
  EmbeddingServiceImpl(EmbeddingEngine& engine, const ServerConfig& config, CallGuard guard,
                       EmbeddingMetrics* metrics)
      : engine_(engine), config_(config), guard_(guard), metrics_(metrics) {}

  grpc::Status EmbedText(grpc::ServerContext*, const v1::EmbedTextRequest*, v1::EmbedResponse*) override;
  grpc::Status EmbedImage(grpc::ServerContext*, const v1::EmbedImageRequest*, v1::EmbedResponse*) override;
  grpc::Status Classify(grpc::ServerContext*, const v1::ClassifyRequest*, v1::ClassifyResponse*) override;
  grpc::Status Rank(grpc::ServerContext*, const v1::RankRequest*, v1::RankResponse*) override;

  const ClassEmbeddingCache& classifiers() const { return classifiers_; }

 private:
  EmbeddingEngine& engine_;
  const ServerConfig& config_;
  CallGuard guard_;
  EmbeddingMetrics* metrics_;
  ClassEmbeddingCache classifiers_;  // Classify's class embeddings by (model, labels, templates)
};

}  // namespace refinery
