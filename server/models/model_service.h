// refinery.v1.ModelService over the ModelRegistry.
#pragma once

#include "refinery/v1/model.grpc.pb.h"
#include "core/base/path_roots.h"
#include "server/runtime/call_guard.h"

namespace refinery {

class ModelRegistry;
struct ModelEntry;

// Fills a ModelInfo from a registry entry (also used by other services).
void fill_model_info(const ModelEntry& entry, const ModelRegistry& registry, v1::ModelInfo* out);

// Where ImportModel may read (--import-root) and ExportModel may write
// (--export-root), and whether an import may be a TorchScript or pickle file,
// which runs code as it loads (--allow-pickle; checkpoints the operator puts
// in --models-dir are always loaded). No roots: anywhere.
struct ModelPathPolicy {
  PathRoots import_roots;
  PathRoots export_roots;
  bool allow_pickle = false;
};

class ModelServiceImpl final : public v1::ModelService::Service {
 public:
  ModelServiceImpl(ModelRegistry& registry, CallGuard guard, ModelPathPolicy paths = {})
      : registry_(registry), guard_(guard), paths_(std::move(paths)) {}

  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::ModelInfo*) override;
  grpc::Status ImportModel(grpc::ServerContext*, const v1::ImportModelRequest*, v1::ModelInfo*) override;
  grpc::Status ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*, v1::ExportModelResponse*) override;
  grpc::Status DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest*, v1::DeleteModelResponse*) override;

 private:
  ModelRegistry& registry_;
  CallGuard guard_;
  ModelPathPolicy paths_;
};

}  // namespace refinery
