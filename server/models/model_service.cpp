#include "server/models/model_service.h"

#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/base/disk_space.h"
#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "server/models/model_registry.h"

namespace refinery {

void fill_model_info(const ModelEntry& e, const ModelRegistry& registry, v1::ModelInfo* out) {
  out->set_name(e.name);
  out->set_version(e.version);
  out->set_ref(e.ref());
  out->set_path(e.path);
  out->set_format(e.format);
  auto* a = out->mutable_architecture();
  const ClipConfig& c = e.config;
  a->set_name(c.name);
  a->set_embed_dim(c.embed_dim);
  a->set_image_size(c.vision.image_size);
  a->set_patch_size(c.vision.patch_size);
  a->set_vision_width(c.vision.width);
  a->set_vision_layers(c.vision.layers);
  a->set_vision_heads(c.vision.heads);
  a->set_text_width(c.text.width);
  a->set_text_layers(c.text.layers);
  a->set_text_heads(c.text.heads);
  a->set_context_length(c.text.context_length);
  a->set_vocab_size(c.text.vocab_size);
  a->set_quick_gelu(c.quick_gelu);
  a->set_open_clip_config_json(c.to_open_clip_json().dump());
  const auto loaded = registry.loaded_models();
  auto it = loaded.find(e.ref());
  out->set_loaded(it != loaded.end());
  out->set_memory_bytes(it != loaded.end() ? it->second : e.parameters * 4);
  out->set_is_default(registry.default_ref() == e.ref());
  out->set_created_unix_ms(e.created_unix_ms);
  out->set_parameters(e.parameters);
  out->set_precision(e.precision);
  if (!e.lineage.empty()) {
    auto* l = out->mutable_lineage();
    l->set_base_model(e.lineage.base_model);
    l->set_job_id(e.lineage.job_id);
    l->set_data(e.lineage.data);
    l->set_method(e.lineage.method);
    for (const auto& [k, v] : e.lineage.hyperparameters) (*l->mutable_hyperparameters())[k] = v;
    for (const auto& [k, v] : e.lineage.metrics) (*l->mutable_metrics())[k] = v;
    for (const auto& [suite, report] : e.lineage.evaluations) *l->add_evaluations() = report;
    for (const auto& [suite, report] : e.lineage.base_evaluations) *l->add_base_evaluations() = report;
  }
}

grpc::Status ModelServiceImpl::ListModels(grpc::ServerContext* context, const v1::ListModelsRequest*,
                                          v1::ListModelsResponse* response) {
  return guard_(context, "ListModels", [&] {
    for (const auto& e : registry_.list()) fill_model_info(e, registry_, response->add_models());
  });
}

grpc::Status ModelServiceImpl::GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                                        v1::ModelInfo* response) {
  return guard_(context, "GetModel", [&] { fill_model_info(registry_.resolve(request->model()), registry_, response); });
}

grpc::Status ModelServiceImpl::ImportModel(grpc::ServerContext* context, const v1::ImportModelRequest* request,
                                           v1::ModelInfo* response) {
  return guard_(context, "ImportModel", [&] {
    const std::string path = paths_.import_roots.check(request->path(), "import path");
    if (!request->model_config_path().empty()) paths_.import_roots.check(request->model_config_path(), "model config");
    const CheckpointFormat format = CheckpointReader::detect_format(path);
    if (!paths_.allow_pickle && (format == CheckpointFormat::kTorchScript || format == CheckpointFormat::kTorchStateDict)) {
      throw permission_denied("import path " + request->path() +
                              " is a TorchScript or pickle checkpoint, which runs code as it loads: convert it to "
                              "safetensors (refinery-model convert), put it in --models-dir, or start the server "
                              "with --allow-pickle");
    }
    const ModelEntry e = registry_.import(request->path(), request->name(), request->model_config_path(),
                                          request->make_default(), {}, request->precision());
    fill_model_info(e, registry_, response);
  });
}

grpc::Status ModelServiceImpl::ExportModel(grpc::ServerContext* context, const v1::ExportModelRequest* request,
                                           v1::ExportModelResponse* response) {
  return guard_(context, "ExportModel", [&] {
    if (request->path().empty()) throw invalid_argument("export needs a destination path");
    paths_.export_roots.check(request->path(), "export path");
    const std::string format = request->format().empty() ? "safetensors" : request->format();
    CheckpointWriteOptions o;
    o.precision = parse_weight_precision(request->precision().empty() ? "fp32" : request->precision());
    auto model = registry_.acquire(request->model());
    uint64_t values = 0;
    for (const auto& p : model->model->parameters()) values += static_cast<uint64_t>(p.numel());
    const std::string parent = std::filesystem::path(request->path()).parent_path().string();
    require_free_space(parent.empty() ? "." : parent,
                       values * (o.precision == WeightPrecision::kFloat16 ? 2 : 4), "exporting " + model->entry.ref());
    o.metadata["refinery.model"] = model->entry.ref();
    ClipModel weights = model->model;  // the writer copies GPU tensors to the host itself
    if (format == "safetensors") {
      CheckpointWriter::write_safetensors(weights, request->path(), o);
    } else if (format == "hf") {
      CheckpointWriter::write_hf_folder(weights, request->path(), o);
    } else {
      throw invalid_argument("unknown export format '" + format + "' (safetensors or hf)");
    }
    struct stat st {};
    const std::string measured = format == "hf" ? request->path() + "/model.safetensors" : request->path();
    response->set_path(request->path());
    response->set_bytes(stat(measured.c_str(), &st) == 0 ? st.st_size : 0);
  });
}

grpc::Status ModelServiceImpl::DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                                           v1::DeleteModelResponse*) {
  return guard_(context, "DeleteModel", [&] { registry_.remove(request->model()); });
}

}  // namespace refinery
