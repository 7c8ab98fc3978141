#include "server/http_api/api_routes.h"

namespace refinery {

const std::vector<ApiRoute>& api_routes() {
  using K = RouteKind;
  static const std::vector<ApiRoute> routes = {
      {"GET", "/health", K::kHealth, "", "Liveness: 200 while the process answers"},
      {"GET", "/ready", K::kReady, "", "Readiness: 200 when a model is registered and the server is not draining, else 503"},
      {"GET", "/openapi.json", K::kOpenApi, "", "This document"},
      {"POST", "/v1/embeddings", K::kEmbeddings, "",
       "Embeddings of texts and images, OpenAI-compatible (normalised; images as data: URLs)"},
      {"GET", "/v1/models", K::kModelList, "refinery.v1.ModelService.ListModels",
       "Registered models, as OpenAI's model list with Refinery's fields added"},
      {"GET", "/v1/models/{model}", K::kModel, "refinery.v1.ModelService.GetModel", "One model (name or name@version)"},
      {"POST", "/v1/models", K::kUnary, "refinery.v1.ModelService.ImportModel", "Register a checkpoint on the server's disk"},
      {"POST", "/v1/models/{model}/export", K::kUnary, "refinery.v1.ModelService.ExportModel",
       "Write a model as safetensors or a Hugging Face folder"},
      {"DELETE", "/v1/models/{model}", K::kUnary, "refinery.v1.ModelService.DeleteModel", "Unregister a model"},
      {"POST", "/v1/embed/text", K::kUnary, "refinery.v1.EmbeddingService.EmbedText", "Text embeddings (Refinery's form)"},
      {"POST", "/v1/embed/image", K::kUnary, "refinery.v1.EmbeddingService.EmbedImage",
       "Image embeddings (Refinery's form; image bytes base64 in JSON)"},
      {"POST", "/v1/classify", K::kUnary, "refinery.v1.EmbeddingService.Classify", "Zero-shot classification of images"},
      {"POST", "/v1/rank", K::kUnary, "refinery.v1.EmbeddingService.Rank",
       "Rank texts against an image, or images against a text"},
      {"GET", "/v1/indexes", K::kUnary, "refinery.v1.IndexService.ListIndexes", "Vector indexes"},
      {"POST", "/v1/indexes", K::kUnary, "refinery.v1.IndexService.CreateIndex", "Create a vector index"},
      {"GET", "/v1/indexes/{name}", K::kUnary, "refinery.v1.IndexService.GetIndex", "One vector index"},
      {"DELETE", "/v1/indexes/{name}", K::kUnary, "refinery.v1.IndexService.DropIndex", "Drop a vector index"},
      {"POST", "/v1/indexes/{index}/items", K::kUnary, "refinery.v1.IndexService.AddItems",
       "Add (or upsert) items: texts, images or vectors"},
      {"POST", "/v1/indexes/{index}/delete", K::kUnary, "refinery.v1.IndexService.DeleteItems", "Delete items by id"},
      {"POST", "/v1/indexes/{index}/search", K::kUnary, "refinery.v1.IndexService.Search",
       "Nearest items to a text, an image or a vector"},
      {"GET", "/v1/jobs", K::kUnary, "refinery.v1.JobService.ListJobs", "Jobs (query: states=JOB_STATE_RUNNING,...)"},
      {"POST", "/v1/jobs", K::kUnary, "refinery.v1.JobService.SubmitJob", "Submit a refine or evaluation job"},
      {"GET", "/v1/jobs/{id}", K::kUnary, "refinery.v1.JobService.GetJob", "One job"},
      {"POST", "/v1/jobs/{id}/cancel", K::kUnary, "refinery.v1.JobService.CancelJob", "Cancel a job"},
      {"POST", "/v1/jobs/{id}/resume", K::kUnary, "refinery.v1.JobService.ResumeJob", "Resume a cancelled or failed job"},
      {"DELETE", "/v1/jobs/{id}", K::kUnary, "refinery.v1.JobService.DeleteJob", "Delete a finished job"},
      {"GET", "/v1/jobs/{id}/events", K::kEvents, "refinery.v1.JobService.WatchJob",
       "A job's events as Server-Sent Events (from_seq, or Last-Event-ID on reconnect), ending with event 'end'"},
      {"GET", "/v1/sweeps", K::kUnary, "refinery.v1.JobService.ListSweeps", "Sweeps"},
      {"POST", "/v1/sweeps", K::kUnary, "refinery.v1.JobService.SubmitSweep", "Submit a sweep (a grid of refine jobs)"},
      {"GET", "/v1/sweeps/{id}", K::kUnary, "refinery.v1.JobService.GetSweep", "One sweep"},
      {"POST", "/v1/sweeps/{id}/cancel", K::kUnary, "refinery.v1.JobService.CancelSweep", "Cancel a sweep's jobs"},
  };
  return routes;
}

std::vector<std::string> path_parameters(const std::string& path) {
  std::vector<std::string> out;
  for (size_t open = path.find('{'); open != std::string::npos; open = path.find('{', open + 1)) {
    const size_t close = path.find('}', open);
    out.push_back(path.substr(open + 1, close - open - 1));
  }
  return out;
}

}  // namespace refinery
