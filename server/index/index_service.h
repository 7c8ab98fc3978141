// refinery.v1.IndexService: named vector indexes bound to a model. Texts and
// images are embedded (L2-normalised) with the index's model; raw vectors
// must have its dimension.
#pragma once

#include "refinery/v1/index.grpc.pb.h"
#include "server/runtime/call_guard.h"
#include "server/runtime/server_config.h"

namespace refinery {

class IndexRegistry;
class EmbeddingEngine;
class ModelRegistry;

class IndexServiceImpl final : public v1::IndexService::Service {
 public:
  IndexServiceImpl(IndexRegistry& indexes, EmbeddingEngine& engine, ModelRegistry& models, const ServerConfig& config,
                   CallGuard guard)
      : indexes_(indexes), engine_(engine), models_(models), config_(config), guard_(guard) {}

  grpc::Status CreateIndex(grpc::ServerContext*, const v1::CreateIndexRequest*, v1::IndexInfo*) override;
  grpc::Status ListIndexes(grpc::ServerContext*, const v1::ListIndexesRequest*, v1::ListIndexesResponse*) override;
  grpc::Status GetIndex(grpc::ServerContext*, const v1::GetIndexRequest*, v1::IndexInfo*) override;
  grpc::Status DropIndex(grpc::ServerContext*, const v1::DropIndexRequest*, v1::DropIndexResponse*) override;
  grpc::Status AddItems(grpc::ServerContext*, const v1::AddItemsRequest*, v1::AddItemsResponse*) override;
  grpc::Status DeleteItems(grpc::ServerContext*, const v1::DeleteItemsRequest*, v1::DeleteItemsResponse*) override;
  grpc::Status Search(grpc::ServerContext*, const v1::SearchRequest*, v1::SearchResponse*) override;

 private:
  IndexRegistry& indexes_;
  EmbeddingEngine& engine_;
  ModelRegistry& models_;
  const ServerConfig& config_;
  CallGuard guard_;
};

}  // namespace refinery
