// The HTTP API's routes: what each path and method does and which gRPC
// method answers it. One table serves the router (http_api.cpp) and the
// OpenAPI document (openapi_document.cpp), so they cannot drift apart.
#pragma once

#include <string>
#include <vector>

namespace refinery {

enum class RouteKind {
  kHealth,      // GET /health: the process answers
  kReady,       // GET /ready: it can serve (models registered, not draining)
  kOpenApi,     // GET /openapi.json
  kEmbeddings,  // POST /v1/embeddings, OpenAI's convention (openai_embeddings.h)
  kModelList,   // GET /v1/models: OpenAI's list shape around ModelInfo
  kModel,       // GET /v1/models/{model}: OpenAI's model shape around ModelInfo
  kUnary,       // a gRPC method with its request as the JSON body (or query) and its response as JSON
  kEvents,      // GET /v1/jobs/{id}/events: WatchJob as Server-Sent Events
};

struct ApiRoute {
  const char* method;  // GET, POST, DELETE
  // "{field}" segments are path parameters: they set that (string) field of
  // the request.
  const char* path;
  RouteKind kind;
  const char* rpc;  // the full gRPC method behind it ("refinery.v1.JobService.GetJob"); "" for none
  const char* summary;
};

const std::vector<ApiRoute>& api_routes();

// "/v1/jobs/{id}/cancel" -> {"id"}
std::vector<std::string> path_parameters(const std::string& path);

}  // namespace refinery
