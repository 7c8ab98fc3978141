// refinery.v1.ModelService over the ModelRegistry.
#pragma once

#include "refinery/v1/model.grpc.pb.h"

namespace refinery {

class ModelRegistry;
class RpcMetrics;
struct ModelEntry;

// Fills a ModelInfo from a registry entry (also used by other services).
void fill_model_info(const ModelEntry& entry, const ModelRegistry& registry, v1::ModelInfo* out);

class ModelServiceImpl final : public v1::ModelService::Service {
 public:
  ModelServiceImpl(ModelRegistry& registry, RpcMetrics* metrics) : registry_(registry), metrics_(metrics) {}

  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::ModelInfo*) override;
  grpc::Status ImportModel(grpc::ServerContext*, const v1::ImportModelRequest*, v1::ModelInfo*) override;
  grpc::Status ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*, v1::ExportModelResponse*) override;
  grpc::Status DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest*, v1::DeleteModelResponse*) override;

 private:
  ModelRegistry& registry_;
  RpcMetrics* metrics_;
};

}  // namespace refinery
