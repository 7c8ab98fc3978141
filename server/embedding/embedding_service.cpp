#include "server/embedding/embedding_service.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/base/clock.h"
#include "core/base/error.h"
#include "server/embedding/call_control.h"
#include "server/embedding/embedding_engine.h"
#include "server/embedding/embedding_metrics.h"
#include "server/models/model_registry.h"

namespace refinery {
namespace {

namespace F = torch::nn::functional;

at::Tensor l2_normalize(const at::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(1)); }

void fill_matrix(const at::Tensor& m, v1::Matrix* out) {
  const auto c = m.contiguous();
  out->set_rows(static_cast<int32_t>(c.size(0)));
  out->set_dim(static_cast<int32_t>(c.size(1)));
  out->mutable_values()->Add(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

std::vector<ImageInput> image_inputs(const google::protobuf::RepeatedPtrField<v1::Image>& images) {
  std::vector<ImageInput> out;
  out.reserve(images.size());
  for (const auto& img : images) out.push_back({&img.data(), img.name()});
  return out;
}

void add_timing(CallTiming& total, const CallTiming& t) {
  total.preprocess_ms += t.preprocess_ms;
  total.queue_ms += t.queue_ms;
  total.inference_ms += t.inference_ms;
  total.batch_size = std::max(total.batch_size, t.batch_size);
}

std::string format_template(const std::string& tmpl, const std::string& label) {
  const size_t at = tmpl.find("{}");
  if (at == std::string::npos) throw invalid_argument("template '" + tmpl + "' has no {} for the label");
  return tmpl.substr(0, at) + label + tmpl.substr(at + 2);
}

}  // namespace

void check_request_size(size_t items, int limit, const char* what) {
  if (items > static_cast<size_t>(limit)) {
    throw invalid_argument(std::string("too many ") + what + ": " + std::to_string(items) + " in one call, limit " +
                           std::to_string(limit) + " (--max-request-items); split the request");
  }
}

void fill_timing(const CallTiming& t, double total_ms, v1::Timing* out) {
  out->set_preprocess_ms(t.preprocess_ms);
  out->set_queue_ms(t.queue_ms);
  out->set_inference_ms(t.inference_ms);
  out->set_total_ms(total_ms);
  out->set_batch_size(t.batch_size);
}

grpc::Status EmbeddingServiceImpl::EmbedText(grpc::ServerContext* context, const v1::EmbedTextRequest* request,
                                             v1::EmbedResponse* response) {
  return guard_(context, "EmbedText", [&] {
    const auto start = Clock::now();
    check_request_size(request->texts_size(), config_.max_request_items, "texts");
    const std::vector<std::string> texts(request->texts().begin(), request->texts().end());
    EmbedOutput out = engine_.embed_texts(request->model(), texts, !request->no_truncate(), call_control(context));
    if (metrics_) metrics_->record_timing(out.timing);
    response->set_model(out.model_ref);
    response->set_tokens(out.tokens);
    fill_matrix(request->normalize() ? l2_normalize(out.embeddings) : out.embeddings, response->mutable_embeddings());
    fill_timing(out.timing, ms_since(start), response->mutable_timing());
  });
}

grpc::Status EmbeddingServiceImpl::EmbedImage(grpc::ServerContext* context, const v1::EmbedImageRequest* request,
                                              v1::EmbedResponse* response) {
  return guard_(context, "EmbedImage", [&] {
    const auto start = Clock::now();
    check_request_size(request->images_size(), config_.max_request_items, "images");
    EmbedOutput out = engine_.embed_images(request->model(), image_inputs(request->images()), call_control(context));
    if (metrics_) metrics_->record_timing(out.timing);
    response->set_model(out.model_ref);
    fill_matrix(request->normalize() ? l2_normalize(out.embeddings) : out.embeddings, response->mutable_embeddings());
    fill_timing(out.timing, ms_since(start), response->mutable_timing());
  });
}

grpc::Status EmbeddingServiceImpl::Classify(grpc::ServerContext* context, const v1::ClassifyRequest* request,
                                            v1::ClassifyResponse* response) {
  return guard_(context, "Classify", [&] {
    const auto start = Clock::now();
    if (request->labels().empty()) throw invalid_argument("no labels given");
    check_request_size(request->images_size(), config_.max_request_items, "images");
    std::vector<std::string> templates(request->templates().begin(), request->templates().end());
    if (templates.empty()) templates.push_back("a photo of a {}.");
    const size_t L = request->labels_size(), T = templates.size();
    check_request_size(L * T, config_.max_request_items * 16, "label prompts (labels x templates)");
    const std::vector<std::string> labels(request->labels().begin(), request->labels().end());
    for (size_t i = 0; i < L; ++i) {
      if (labels[i].empty()) throw invalid_argument("labels[" + std::to_string(i) + "] is empty");
    }
    for (const auto& t : templates) format_template(t, labels[0]);  // a template without {} fails before any work
    const auto control = call_control(context);
    const ModelEntry model = engine_.resolve(request->model());
    CallTiming timing;
    EmbedOutput images = engine_.embed_images(model.ref(), image_inputs(request->images()), control);
    add_timing(timing, images.timing);
    // CLIP's prompt ensembling: mean of the normalised prompt embeddings per
    // label, renormalised. Built once per (model, labels, templates); the
    // prompts go to the batcher a batch at a time, so any number of them fits
    // the queue.
    const at::Tensor classes = classifiers_.get(
        ClassEmbeddingCache::key(model.ref(), model.created_unix_ms, labels, templates), [&] {
          std::vector<std::string> prompts;
          prompts.reserve(L * T);
          for (const auto& label : labels) {
            for (const auto& t : templates) prompts.push_back(format_template(t, label));
          }
          const size_t chunk = static_cast<size_t>(
              std::max(1, std::min(engine_.config().max_batch_texts, engine_.config().max_queue_items)));
          std::vector<at::Tensor> parts;
          for (size_t i = 0; i < prompts.size(); i += chunk) {
            const std::vector<std::string> part(prompts.begin() + i,
                                                prompts.begin() + std::min(prompts.size(), i + chunk));
            EmbedOutput texts = engine_.embed_texts(model.ref(), part, /*truncate=*/true, control);
            add_timing(timing, texts.timing);
            parts.push_back(std::move(texts.embeddings));
          }
          torch::InferenceMode guard;
          const auto all = parts.size() == 1 ? parts[0] : torch::cat(parts);
          const int64_t D = all.size(1);
          return l2_normalize(l2_normalize(all).view({static_cast<int64_t>(L), static_cast<int64_t>(T), D}).mean(1));
        });
    if (metrics_) metrics_->record_timing(timing);
    torch::InferenceMode guard;
    auto cosine = l2_normalize(images.embeddings).matmul(classes.t());
    auto probs = (cosine * images.logit_scale).softmax(1);
    const int64_t k = request->top_k() > 0 ? std::min<int64_t>(request->top_k(), L) : static_cast<int64_t>(L);
    auto top = probs.topk(k, 1);
    auto values = std::get<0>(top), indices = std::get<1>(top);
    response->set_model(images.model_ref);
    for (int i = 0; i < request->images_size(); ++i) {
      auto* result = response->add_results();
      result->set_image(request->images(i).name());
      for (int64_t j = 0; j < k; ++j) {
        const int64_t c = indices[i][j].item<int64_t>();
        auto* s = result->add_labels();
        s->set_label(request->labels(static_cast<int>(c)));
        s->set_index(static_cast<int32_t>(c));
        s->set_probability(values[i][j].item<double>());
        s->set_cosine(cosine[i][c].item<double>());
      }
    }
    fill_timing(timing, ms_since(start), response->mutable_timing());
  });
}

grpc::Status EmbeddingServiceImpl::Rank(grpc::ServerContext* context, const v1::RankRequest* request,
                                        v1::RankResponse* response) {
  return guard_(context, "Rank", [&] {
    const auto start = Clock::now();
    const auto control = call_control(context);
    CallTiming timing;
    EmbedOutput query, candidates;
    std::vector<std::string> names;
    if (request->has_image()) {
      if (request->texts().empty()) throw invalid_argument("an image query needs candidate texts");
      if (!request->images().empty()) throw invalid_argument("an image query ranks texts: give texts, not images");
      check_request_size(request->texts_size(), config_.max_request_items, "texts");
      query = engine_.embed_images(request->model(), {{&request->image().data(), request->image().name()}}, control);
      names.assign(request->texts().begin(), request->texts().end());
      candidates = engine_.embed_texts(query.model_ref, names, true, control);
    } else if (request->query_case() == v1::RankRequest::kText) {
      if (request->images().empty()) throw invalid_argument("a text query needs candidate images");
      if (!request->texts().empty()) throw invalid_argument("a text query ranks images: give images, not texts");
      check_request_size(request->images_size(), config_.max_request_items, "images");
      query = engine_.embed_texts(request->model(), {request->text()}, true, control);
      for (int i = 0; i < request->images_size(); ++i) {
        names.push_back(request->images(i).name().empty() ? "images[" + std::to_string(i) + "]"
                                                          : request->images(i).name());
      }
      candidates = engine_.embed_images(query.model_ref, image_inputs(request->images()), control);
    } else {
      throw invalid_argument("rank needs a query: an image or a text");
    }
    add_timing(timing, query.timing);
    add_timing(timing, candidates.timing);
    if (metrics_) metrics_->record_timing(timing);
    torch::InferenceMode guard;
    auto cosine = l2_normalize(candidates.embeddings).matmul(l2_normalize(query.embeddings)[0]);
    at::Tensor scores = cosine;
    if (request->score() != v1::SCORE_MODE_COSINE) {
      scores = (cosine * query.logit_scale).softmax(0);
    }
    const int64_t n = scores.size(0);
    const int64_t k = request->top_k() > 0 ? std::min<int64_t>(request->top_k(), n) : n;
    auto top = scores.topk(k);
    auto values = std::get<0>(top), indices = std::get<1>(top);
    response->set_model(query.model_ref);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t i = indices[j].item<int64_t>();
      auto* item = response->add_items();
      item->set_index(static_cast<int32_t>(i));
      item->set_name(names[i]);
      item->set_score(values[j].item<double>());
    }
    fill_timing(timing, ms_since(start), response->mutable_timing());
  });
}

}  // namespace refinery
