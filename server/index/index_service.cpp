#include "server/index/index_service.h"

#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/base/clock.h"
#include "core/base/error.h"
#include "server/embedding/call_control.h"
#include "server/embedding/embedding_engine.h"
#include "server/embedding/embedding_service.h"
#include "server/index/index_registry.h"
#include "server/models/model_registry.h"

namespace refinery {
namespace {

IndexKind kind_from_proto(v1::IndexKind k) {
  switch (k) {
    case v1::INDEX_KIND_UNSPECIFIED:
    case v1::INDEX_KIND_FLAT: return IndexKind::kFlat;
    case v1::INDEX_KIND_IVF: return IndexKind::kIvf;
    case v1::INDEX_KIND_HNSW: return IndexKind::kHnsw;
    default: throw invalid_argument("unknown index kind " + std::to_string(static_cast<int>(k)));
  }
}

v1::IndexKind kind_to_proto(IndexKind k) {
  switch (k) {
    case IndexKind::kFlat: return v1::INDEX_KIND_FLAT;
    case IndexKind::kIvf: return v1::INDEX_KIND_IVF;
    case IndexKind::kHnsw: return v1::INDEX_KIND_HNSW;
  }
  return v1::INDEX_KIND_FLAT;
}

void fill_index_info(const IndexInfo& info, v1::IndexInfo* out) {
  out->set_name(info.name);
  out->set_model(info.model);
  out->set_dim(info.dim);
  out->set_size(info.size);
  out->set_created_unix_ms(info.created_unix_ms);
  out->set_trained(info.trained);
  auto* o = out->mutable_options();
  o->set_kind(kind_to_proto(info.options.kind));
  if (info.options.kind == IndexKind::kIvf) o->set_ivf_nlist(info.options.ivf_nlist);
  if (info.options.kind == IndexKind::kHnsw) {
    o->set_hnsw_m(info.options.hnsw_m);
    o->set_hnsw_ef_construction(info.options.hnsw_ef_construction);
  }
}

at::Tensor normalized(const at::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1)).contiguous();
}

void check_vector(const v1::Vector& v, int dim, const std::string& what) {
  if (v.values_size() != dim) {
    throw invalid_argument(what + " has " + std::to_string(v.values_size()) + " values; the index needs " +
                           std::to_string(dim));
  }
  for (float x : v.values()) {
    if (!std::isfinite(x)) throw invalid_argument(what + " has a non-finite value");
  }
}

constexpr size_t kMaxIdBytes = 512;
constexpr size_t kMaxMetadataBytes = 64 << 10;

void check_metadata(const std::string& json, const std::string& what) {
  if (json.empty()) return;
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(what + ": metadata is not valid JSON: " + e.what());
  }
  if (!parsed.is_object()) throw invalid_argument(what + ": metadata must be a JSON object");
}

}  // namespace

grpc::Status IndexServiceImpl::CreateIndex(grpc::ServerContext* context, const v1::CreateIndexRequest* request,
                                           v1::IndexInfo* response) {
  return guard_(context, "CreateIndex", [&] {
    const ModelEntry model = models_.resolve(request->model());  // bound to an exact version
    IndexOptions o;
    o.kind = kind_from_proto(request->options().kind());
    o.ivf_nlist = request->options().ivf_nlist();
    if (request->options().hnsw_m() > 0) o.hnsw_m = request->options().hnsw_m();
    if (request->options().hnsw_ef_construction() > 0) o.hnsw_ef_construction = request->options().hnsw_ef_construction();
    fill_index_info(indexes_.create(request->name(), model.ref(), model.config.embed_dim, o), response);
  });
}

grpc::Status IndexServiceImpl::ListIndexes(grpc::ServerContext* context, const v1::ListIndexesRequest*,
                                           v1::ListIndexesResponse* response) {
  return guard_(context, "ListIndexes", [&] {
    for (const auto& info : indexes_.list()) fill_index_info(info, response->add_indexes());
  });
}

grpc::Status IndexServiceImpl::GetIndex(grpc::ServerContext* context, const v1::GetIndexRequest* request,
                                        v1::IndexInfo* response) {
  return guard_(context, "GetIndex", [&] { fill_index_info(indexes_.get(request->name())->info(), response); });
}

grpc::Status IndexServiceImpl::DropIndex(grpc::ServerContext* context, const v1::DropIndexRequest* request,
                                         v1::DropIndexResponse*) {
  return guard_(context, "DropIndex", [&] { indexes_.drop(request->name()); });
}

grpc::Status IndexServiceImpl::AddItems(grpc::ServerContext* context, const v1::AddItemsRequest* request,
                                        v1::AddItemsResponse* response) {
  return guard_(context, "AddItems", [&] {
    const auto start = Clock::now();
    const IndexInfo info = indexes_.get(request->index())->info();
    if (request->items().empty()) throw invalid_argument("no items given");
    check_request_size(request->items_size(), config_.max_request_items, "items");
    const int n = request->items_size();
    // Replacing existing ids may not grow the index; the store checks exactly.
    if (info.size + n > config_.max_index_items) {
      throw resource_exhausted("index " + info.name + " holds " + std::to_string(info.size) + " items; adding " +
                               std::to_string(n) + " would pass the limit of " + std::to_string(config_.max_index_items) +
                               " (--max-index-items)");
    }
    // Embed texts and images in one call each; vectors go straight in.
    std::vector<std::string> texts, ids(n), metadata(n);
    std::vector<int> text_rows, image_rows;
    std::vector<ImageInput> images;
    auto vectors = torch::empty({n, info.dim}, torch::kFloat);
    for (int i = 0; i < n; ++i) {
      const auto& item = request->items(i);
      if (item.id().empty()) throw invalid_argument("items[" + std::to_string(i) + "] has no id");
      if (item.id().size() > kMaxIdBytes) {
        throw invalid_argument("items[" + std::to_string(i) + "]: id of " + std::to_string(item.id().size()) +
                               " bytes; the limit is " + std::to_string(kMaxIdBytes));
      }
      const std::string what = "items[" + std::to_string(i) + "] (id '" + item.id() + "')";
      if (item.metadata_json().size() > kMaxMetadataBytes) {
        throw invalid_argument(what + ": metadata of " + std::to_string(item.metadata_json().size()) +
                               " bytes; the limit is " + std::to_string(kMaxMetadataBytes));
      }
      ids[i] = item.id();
      check_metadata(item.metadata_json(), what);
      metadata[i] = item.metadata_json();
      switch (item.content_case()) {
        case v1::IndexItem::kText:
          texts.push_back(item.text());
          text_rows.push_back(i);
          break;
        case v1::IndexItem::kImage:
          images.push_back({&item.image().data(), item.image().name().empty() ? item.id() : item.image().name()});
          image_rows.push_back(i);
          break;
        case v1::IndexItem::kVector: {
          check_vector(item.vector(), info.dim, what);
          auto row = torch::from_blob(const_cast<float*>(item.vector().values().data()), {1, info.dim}, torch::kFloat);
          vectors[i].copy_(row[0]);
          break;
        }
        default:
          throw invalid_argument(what + " has no content (text, image or vector)");
      }
    }
    const auto control = call_control(context);
    CallTiming timing;
    if (!texts.empty()) {
      auto out = engine_.embed_texts(info.model, texts, true, control);
      for (size_t j = 0; j < text_rows.size(); ++j) vectors[text_rows[j]].copy_(out.embeddings[j]);
      timing.preprocess_ms += out.timing.preprocess_ms;
      timing.queue_ms += out.timing.queue_ms;
      timing.inference_ms += out.timing.inference_ms;
      timing.batch_size = std::max(timing.batch_size, out.timing.batch_size);
    }
    if (!images.empty()) {
      auto out = engine_.embed_images(info.model, images, control);
      for (size_t j = 0; j < image_rows.size(); ++j) vectors[image_rows[j]].copy_(out.embeddings[j]);
      timing.preprocess_ms += out.timing.preprocess_ms;
      timing.queue_ms += out.timing.queue_ms;
      timing.inference_ms += out.timing.inference_ms;
      timing.batch_size = std::max(timing.batch_size, out.timing.batch_size);
    }
    const auto unit = normalized(vectors);
    const AddItemsResult r = indexes_.add(request->index(), ids, unit.data_ptr<float>(), n, metadata, request->upsert());
    response->set_added(static_cast<int64_t>(r.added + r.replaced));
    response->set_size(static_cast<int64_t>(r.size));
    fill_timing(timing, ms_since(start), response->mutable_timing());
  });
}

grpc::Status IndexServiceImpl::DeleteItems(grpc::ServerContext* context, const v1::DeleteItemsRequest* request,
                                           v1::DeleteItemsResponse* response) {
  return guard_(context, "DeleteItems", [&] {
    if (request->ids().empty()) throw invalid_argument("no ids given");
    const std::vector<std::string> ids(request->ids().begin(), request->ids().end());
    const RemoveItemsResult r = indexes_.remove(request->index(), ids);
    response->set_deleted(static_cast<int64_t>(r.deleted));
    response->set_size(static_cast<int64_t>(r.size));
  });
}

grpc::Status IndexServiceImpl::Search(grpc::ServerContext* context, const v1::SearchRequest* request,
                                      v1::SearchResponse* response) {
  return guard_(context, "Search", [&] {
    const auto start = Clock::now();
    auto handle = indexes_.get(request->index());
    const IndexInfo info = handle->info();
    const auto control = call_control(context);
    CallTiming timing;
    at::Tensor query;
    switch (request->query_case()) {
      case v1::SearchRequest::kText: {
        auto out = engine_.embed_texts(info.model, {request->text()}, true, control);
        query = out.embeddings;
        timing = out.timing;
        break;
      }
      case v1::SearchRequest::kImage: {
        auto out = engine_.embed_images(
            info.model, {{&request->image().data(), request->image().name().empty() ? "query image" : request->image().name()}},
            control);
        query = out.embeddings;
        timing = out.timing;
        break;
      }
      case v1::SearchRequest::kVector:
        check_vector(request->vector(), info.dim, "the query vector");
        query = torch::from_blob(const_cast<float*>(request->vector().values().data()), {1, info.dim}, torch::kFloat);
        break;
      default:
        throw invalid_argument("search needs a query: text, image or vector");
    }
    const int k = request->k() > 0 ? request->k() : 10;
    SearchParams params;
    params.ivf_nprobe = request->params().ivf_nprobe();
    params.hnsw_ef_search = request->params().hnsw_ef_search();
    const auto unit = normalized(query);
    const auto search_start = Clock::now();
    const auto hits = handle->index()->search(unit.data_ptr<float>(), 1, k, params);
    response->set_search_ms(ms_since(search_start));
    for (const auto& h : hits[0]) {
      auto* hit = response->add_hits();
      hit->set_id(h.id);
      hit->set_score(h.score);
      hit->set_metadata_json(h.metadata_json);
    }
    fill_timing(timing, ms_since(start), response->mutable_timing());
  });
}

}  // namespace refinery
