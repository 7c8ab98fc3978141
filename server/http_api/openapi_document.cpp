#include "server/http_api/openapi_document.h"

#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>

#include "core/base/error.h"

namespace refinery {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::MethodDescriptor;
using nlohmann::ordered_json;

std::string schema_ref(const std::string& name) { return "#/components/schemas/" + name; }

class SchemaSet {
 public:
  // The schema of a field's value (its element, for a repeated field).
  ordered_json value_schema(const FieldDescriptor& f) {
    switch (f.type()) {
      case FieldDescriptor::TYPE_STRING: return {{"type", "string"}};
      case FieldDescriptor::TYPE_BYTES: return {{"type", "string"}, {"format", "byte"}};
      case FieldDescriptor::TYPE_BOOL: return {{"type", "boolean"}};
      case FieldDescriptor::TYPE_FLOAT: return {{"type", "number"}, {"format", "float"}};
      case FieldDescriptor::TYPE_DOUBLE: return {{"type", "number"}, {"format", "double"}};
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32: return {{"type", "integer"}, {"format", "int32"}};
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32:
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64: return {{"type", "integer"}, {"format", "int64"}};
      case FieldDescriptor::TYPE_ENUM: {
        ordered_json values = ordered_json::array();
        for (int i = 0; i < f.enum_type()->value_count(); ++i) values.push_back(f.enum_type()->value(i)->name());
        return {{"type", "string"}, {"enum", values}};
      }
      case FieldDescriptor::TYPE_MESSAGE:
      case FieldDescriptor::TYPE_GROUP:
        return {{"$ref", schema_ref(add(*f.message_type()))}};
    }
    return ordered_json::object();
  }

  ordered_json field_schema(const FieldDescriptor& f) {
    if (f.is_map()) {
      return {{"type", "object"}, {"additionalProperties", value_schema(*f.message_type()->map_value())}};
    }
    if (f.is_repeated()) return {{"type", "array"}, {"items", value_schema(f)}};
    return value_schema(f);
  }

  // Adds the message's schema (and those it refers to); returns its name.
  std::string add(const Descriptor& type) {
    const std::string name = type.full_name();
    if (!seen_.insert(name).second) return name;
    ordered_json properties = ordered_json::object();
    for (int i = 0; i < type.field_count(); ++i) properties[type.field(i)->name()] = field_schema(*type.field(i));
    ordered_json schema = {{"type", "object"}, {"properties", properties}};
    std::string oneofs;
    for (int i = 0; i < type.oneof_decl_count(); ++i) {
      const auto* o = type.oneof_decl(i);
      if (o->is_synthetic()) continue;  // proto3 `optional`
      std::string fields;
      for (int k = 0; k < o->field_count(); ++k) fields += (k ? ", " : "") + o->field(k)->name();
      oneofs += std::string(oneofs.empty() ? "" : " ") + "At most one of " + fields + ".";
    }
    if (!oneofs.empty()) schema["description"] = oneofs;
    schemas_[name] = std::move(schema);
    return name;
  }

  ordered_json& schemas() { return schemas_; }

 private:
  std::set<std::string> seen_;
  ordered_json schemas_ = ordered_json::object();
};

// The schemas of what is not a protobuf message: OpenAI's shapes, errors
// and statuses.
ordered_json openai_schemas() {
  return ordered_json::parse(R"json({
  "OpenAIEmbeddingsRequest": {
    "type": "object", "required": ["input"],
    "properties": {
      "model": {"type": "string", "description": "name or name@version; omitted: the default model"},
      "input": {"oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"oneOf": [
          {"type": "string"},
          {"type": "object", "required": ["type", "text"],
           "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}},
          {"type": "object", "required": ["type", "image"],
           "properties": {"type": {"type": "string", "enum": ["image"]},
                          "image": {"type": "string", "description": "data:image/...;base64,... (no URL is fetched)"}}}
        ]}}
      ]},
      "encoding_format": {"type": "string", "enum": ["float", "base64"]},
      "dimensions": {"type": "integer", "description": "must equal the model's embedding size: CLIP's cannot be shortened"},
      "user": {"type": "string", "description": "ignored"}
    }
  },
  "OpenAIEmbeddingsResponse": {
    "type": "object",
    "properties": {
      "object": {"type": "string", "enum": ["list"]},
      "data": {"type": "array", "items": {
        "type": "object",
        "properties": {
          "object": {"type": "string", "enum": ["embedding"]},
          "index": {"type": "integer"},
          "embedding": {"oneOf": [
            {"type": "array", "items": {"type": "number"}},
            {"type": "string", "description": "base64 of little-endian float32"}
          ]}
        }
      }},
      "model": {"type": "string", "description": "the resolved name@version"},
      "usage": {"type": "object", "properties": {
        "prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}}
    }
  },
  "OpenAIModel": {"allOf": [
    {"type": "object", "properties": {
      "id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]},
      "created": {"type": "integer"}, "owned_by": {"type": "string"}}},
    {"$ref": "#/components/schemas/refinery.v1.ModelInfo"}
  ]},
  "OpenAIModelList": {"type": "object", "properties": {
    "object": {"type": "string", "enum": ["list"]},
    "data": {"type": "array", "items": {"$ref": "#/components/schemas/OpenAIModel"}}}},
  "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"},
    "type": {"type": "string", "description": "invalid_request_error, authentication_error, permission_error, not_found_error, conflict_error, rate_limit_error or server_error"},
    "code": {"type": "string", "description": "the gRPC status code's name"}}}}},
  "Status": {"type": "object", "properties": {"status": {"type": "string"}, "reason": {"type": "string"}}}
})json");
}

ordered_json json_content(const std::string& schema_name) {
  return {{"application/json", {{"schema", {{"$ref", schema_ref(schema_name)}}}}}};
}

}  // namespace

std::string openapi_document(const std::vector<ApiRoute>& routes) {
  SchemaSet schemas;
  ordered_json paths = ordered_json::object();
  for (const ApiRoute& route : routes) {
    const MethodDescriptor* method = nullptr;
    if (route.rpc[0] != '\0') {
      method = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(route.rpc);
      if (method == nullptr) throw internal_error(std::string("OpenAPI: no gRPC method ") + route.rpc);
    }
    std::string verb = route.method;
    for (char& c : verb) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    ordered_json op = {{"summary", route.summary},
                       {"operationId", method ? method->name() + (route.kind == RouteKind::kEvents ? "Events" : "")
                                              : std::string(route.path == std::string("/v1/embeddings")
                                                                ? "CreateEmbeddings"
                                                                : route.path + 1)}};
    ordered_json parameters = ordered_json::array();
    const auto path_names = path_parameters(route.path);
    for (const auto& name : path_names) {
      parameters.push_back({{"name", name}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}});
    }
    ordered_json responses = ordered_json::object();
    switch (route.kind) {
      case RouteKind::kHealth:
      case RouteKind::kReady:
        op["security"] = ordered_json::array();
        responses["200"] = {{"description", "OK"}, {"content", json_content("Status")}};
        if (route.kind == RouteKind::kReady) {
          responses["503"] = {{"description", "not ready"}, {"content", json_content("Status")}};
        }
        break;
      case RouteKind::kOpenApi:
        op["security"] = ordered_json::array();
        responses["200"] = {{"description", "this document"},
                            {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
        break;
      case RouteKind::kEmbeddings:
        op["requestBody"] = {{"required", true}, {"content", json_content("OpenAIEmbeddingsRequest")}};
        responses["200"] = {{"description", "OK"}, {"content", json_content("OpenAIEmbeddingsResponse")}};
        break;
      case RouteKind::kModelList:
        responses["200"] = {{"description", "OK"}, {"content", json_content("OpenAIModelList")}};
        schemas.add(*method->output_type()->FindFieldByName("models")->message_type());
        break;
      case RouteKind::kModel:
        responses["200"] = {{"description", "OK"}, {"content", json_content("OpenAIModel")}};
        schemas.add(*method->output_type());
        break;
      case RouteKind::kEvents:
        parameters.push_back({{"name", "from_seq"}, {"in", "query"}, {"schema", {{"type", "integer"}}}});
        parameters.push_back({{"name", "Last-Event-ID"}, {"in", "header"}, {"schema", {{"type", "integer"}}}});
        responses["200"] = {
            {"description",
             "text/event-stream: one event per JobEvent (id: its seq, event: its kind, data: its JSON, schema " +
                 schemas.add(*method->output_type()) + "), then 'end' (or 'error' with an Error)"},
            {"content", {{"text/event-stream", {{"schema", {{"type", "string"}}}}}}}};
        break;
      case RouteKind::kUnary: {
        const Descriptor& input = *method->input_type();
        if (verb == "post") {
          op["requestBody"] = {{"required", path_names.empty()}, {"content", json_content(schemas.add(input))}};
        } else {
          for (int i = 0; i < input.field_count(); ++i) {
            const FieldDescriptor& f = *input.field(i);
            if (std::find(path_names.begin(), path_names.end(), f.name()) != path_names.end()) continue;
            ordered_json p = {{"name", f.name()}, {"in", "query"}, {"schema", schemas.field_schema(f)}};
            if (f.is_repeated()) p["description"] = "repeat it, or separate the values by commas";
            parameters.push_back(std::move(p));
          }
        }
        responses["200"] = {{"description", "OK"}, {"content", json_content(schemas.add(*method->output_type()))}};
        break;
      }
    }
    responses["default"] = {{"description", "an error, with the HTTP status of its gRPC code"},
                            {"content", json_content("Error")}};
    if (!parameters.empty()) op["parameters"] = std::move(parameters);
    op["responses"] = std::move(responses);
    paths[route.path][verb] = std::move(op);
  }
  ordered_json components = ordered_json::object();
  const ordered_json extra = openai_schemas();
  for (const auto& [name, schema] : extra.items()) schemas.schemas()[name] = schema;
  components["schemas"] = std::move(schemas.schemas());
  components["securitySchemes"] = {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}};
  const ordered_json doc = {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", "Refinery HTTP API"},
        {"version", "v1"},
        {"description",
         "Refinery's gRPC services as JSON, and OpenAI-compatible embeddings. Tokens as `Authorization: Bearer "
         "TOKEN` (roles as over gRPC). JSON follows the protobuf field names; every field is present; enums are "
         "their names; bytes are base64; 64-bit integers are numbers (strings are accepted too)."}}},
      {"security", {{{"bearer", ordered_json::array()}}}},
      {"paths", std::move(paths)},
      {"components", std::move(components)}};
  return doc.dump(2);
}

}  // namespace refinery
