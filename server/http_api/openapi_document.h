// The HTTP API's OpenAPI 3.0 document (/openapi.json), made from the route
// table and the request and response messages' descriptors, so it describes
// exactly what the server parses and prints: proto field names, every field
// present, enums by name, bytes as base64, 64-bit integers as numbers.
#pragma once

#include <string>
#include <vector>

#include "server/http_api/api_routes.h"

namespace refinery {

std::string openapi_document(const std::vector<ApiRoute>& routes);

}  // namespace refinery
