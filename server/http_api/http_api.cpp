#include "server/http_api/http_api.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "refinery/grpc_code_name.h"
#include "refinery/proto_json.h"
#include "refinery/v1/embedding.pb.h"
#include "refinery/v1/job.grpc.pb.h"
#include "refinery/v1/model.pb.h"
#include "server/http_api/api_routes.h"
#include "server/http_api/openai_embeddings.h"
#include "server/http_api/openapi_document.h"
#include "server/runtime/grpc_status.h"

namespace refinery {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MethodDescriptor;
using nlohmann::ordered_json;

constexpr const char* kJson = "application/json";

const MethodDescriptor& method_of(const std::string& full_name) {
  const MethodDescriptor* m = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(full_name);
  if (m == nullptr) throw internal_error("HTTP API: no gRPC method " + full_name);
  return *m;
}

std::unique_ptr<Message> new_message(const Descriptor& type) {
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(&type)->New());
}

// "/v1/jobs/{id}" -> "/v1/jobs/([^/]+)", for cpp-httplib's regex routes.
std::string route_pattern(const std::string& path) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '{') {
      i = path.find('}', i);
      out += "([^/]+)";
    } else if (path[i] == '.') {
      out += "\\.";
    } else {
      out += path[i];
    }
  }
  return out;
}

std::string error_body(const grpc::Status& status) {
  const ordered_json body = {{"error",
                              {{"message", status.error_message()},
                               {"type", http_error_type(status.error_code())},
                               {"code", grpc_code_name(status.error_code())}}}};
  return body.dump();
}

void send_status(httplib::Response& res, const grpc::Status& status) {
  res.status = http_status(status.error_code());
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(error_body(status), kJson);
}

void send_json(httplib::Response& res, const std::string& body) {
  res.status = 200;
  res.set_content(body, kJson);
}

// The JSON body parsed into `message`; unknown fields are errors.
void parse_body(const std::string& body, Message& message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(body.empty() ? "{}" : body, &message, options);
  if (!status.ok()) {
    throw invalid_argument("request body (" + message.GetDescriptor()->name() + "): " + std::string(status.message()));
  }
}

// Query parameters as the request's fields: ?states=A,B&states=C for a
// repeated field, true/false for a bool, the rest as text.
void parse_query(const httplib::Request& req, Message& message) {
  const Descriptor& type = *message.GetDescriptor();
  ordered_json j = ordered_json::object();
  for (const auto& [key, value] : req.params) {
    const FieldDescriptor* f = type.FindFieldByName(key);
    if (f == nullptr) {
      throw invalid_argument("query parameter '" + key + "': " + type.name() + " has no such field");
    }
    if (f->is_repeated()) {
      if (!j.contains(key)) j[key] = ordered_json::array();
      size_t start = 0;
      for (;;) {
        const size_t comma = value.find(',', start);
        j[key].push_back(value.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL && (value == "true" || value == "false")) {
      j[key] = value == "true";
    } else {
      j[key] = value;
    }
  }
  parse_body(j.dump(), message);
}

// Path parameters into their string fields; a body that names another value
// for one is refused rather than silently overridden.
void set_path_parameters(const ApiRoute& route, const httplib::Request& req, Message& message) {
  const auto names = path_parameters(route.path);
  const auto* reflection = message.GetReflection();
  for (size_t i = 0; i < names.size(); ++i) {
    const FieldDescriptor* f = message.GetDescriptor()->FindFieldByName(names[i]);
    if (f == nullptr || f->cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
      throw internal_error("HTTP API: route " + std::string(route.path) + " sets no string field " + names[i]);
    }
    const std::string value = req.matches[i + 1].str();
    const std::string given = reflection->GetString(message, f);
    if (!given.empty() && given != value) {
      throw invalid_argument("'" + names[i] + "' is \"" + value + "\" in the path but \"" + given + "\" in the body");
    }
    reflection->SetString(&message, f, value);
  }
}

// The caller's credentials travel with the call, as a gRPC client sends them.
void forward_credentials(const httplib::Request& req, grpc::ClientContext& ctx) {
  if (req.has_header("Authorization")) ctx.AddMetadata("authorization", req.get_header_value("Authorization"));
}

ordered_json openai_model(const v1::ModelInfo& info) {
  ordered_json out = {{"id", info.ref()},
                      {"object", "model"},
                      {"created", info.created_unix_ms() / 1000},
                      {"owned_by", "refinery"}};
  const ordered_json fields = proto_to_json(info);  // a temporary's items() would dangle
  for (const auto& [key, value] : fields.items()) out[key] = value;
  return out;
}

// One Server-Sent Event: its id (the event's seq, which a reconnecting
// EventSource sends back as Last-Event-ID), its type and its JSON.
std::string sse_event(int64_t id, const std::string& type, const std::string& data) {
  std::string out;
  if (id > 0) out += "id: " + std::to_string(id) + "\n";
  out += "event: " + type + "\n";
  out += "data: " + data + "\n\n";
  return out;
}

// Which of JobEvent's kinds (its oneof) this event is: "state", "step", ...
std::string event_type(const v1::JobEvent& event) {
  const Descriptor& type = *event.GetDescriptor();
  for (int i = 0; i < type.oneof_decl_count(); ++i) {
    if (const FieldDescriptor* f = event.GetReflection()->GetOneofFieldDescriptor(event, type.oneof_decl(i))) {
      return f->name();
    }
  }
  return "event";
}

int64_t integer_parameter(const std::string& text, const std::string& what) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) {
    throw invalid_argument(what + ": expected a non-negative integer, got \"" + text + "\"");
  }
  return std::stoll(text);
}

// A WatchJob call that outlives the handler: cpp-httplib writes the stream
// from its content provider after the handler has returned.
struct EventStream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader;
  v1::JobEvent first;
  bool finished = false;

  ~EventStream() {
    if (reader && !finished) {
      ctx.TryCancel();
      v1::JobEvent rest;
      while (reader->Read(&rest)) {
      }
      reader->Finish();
    }
  }
};

}  // namespace

struct HttpApi::Impl {
  std::shared_ptr<grpc::Channel> channel;
  HttpApiOptions options;
  grpc::TemplatedGenericStub<Message, Message> stub;
  std::unique_ptr<v1::JobService::Stub> jobs;
  std::string openapi;

  Impl(std::shared_ptr<grpc::Channel> c, HttpApiOptions o)
      : channel(c), options(std::move(o)), stub(c), jobs(v1::JobService::NewStub(c)),
        openapi(openapi_document(api_routes())) {}

  // A unary gRPC call through the generic stub, waited for.
  grpc::Status call(const httplib::Request& req, const MethodDescriptor& method, const Message& request,
                    Message* response) const {
    grpc::ClientContext ctx;
    forward_credentials(req, ctx);
    grpc::CompletionQueue cq;
    auto rpc = const_cast<grpc::TemplatedGenericStub<Message, Message>&>(stub).PrepareUnaryCall(
        &ctx, "/" + method.service()->full_name() + "/" + method.name(), request, &cq);
    rpc->StartCall();
    grpc::Status status;
    rpc->Finish(response, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

  void unary(const ApiRoute& route, const httplib::Request& req, httplib::Response& res) const {
    const MethodDescriptor& method = method_of(route.rpc);
    auto request = new_message(*method.input_type());
    if (std::strcmp(route.method, "POST") == 0) {
      parse_body(req.body, *request);
    } else {
      parse_query(req, *request);
    }
    set_path_parameters(route, req, *request);
    auto response = new_message(*method.output_type());
    const grpc::Status status = call(req, method, *request, response.get());
    if (!status.ok()) return send_status(res, status);
    if (route.kind == RouteKind::kModelList) {
      ordered_json data = ordered_json::array();
      for (const auto& m : static_cast<const v1::ListModelsResponse&>(*response).models()) {
        data.push_back(openai_model(m));
      }
      return send_json(res, ordered_json({{"object", "list"}, {"data", std::move(data)}}).dump());
    }
    if (route.kind == RouteKind::kModel) {
      return send_json(res, openai_model(static_cast<const v1::ModelInfo&>(*response)).dump());
    }
    send_json(res, proto_to_json(*response).dump());
  }

  void embeddings(const httplib::Request& req, httplib::Response& res) const {
    EmbeddingsRequest r = parse_embeddings_request(req.body, options.max_request_items);
    v1::EmbedTextRequest texts;
    v1::EmbedImageRequest images;
    std::vector<size_t> text_at, image_at;
    for (size_t i = 0; i < r.inputs.size(); ++i) {
      EmbeddingsInput& in = r.inputs[i];
      if (in.kind == EmbeddingsInput::Kind::kText) {
        texts.add_texts(std::move(in.text));
        text_at.push_back(i);
      } else {
        v1::Image* image = images.add_images();
        image->set_data(std::move(in.image));
        image->set_name(in.name);
        image_at.push_back(i);
      }
    }
    std::string model = r.model;
    std::vector<float> rows;
    int dim = 0;
    int64_t tokens = 0;
    // Texts first; images then name the exact version the texts resolved
    // to, so one response never mixes two versions of a model.
    auto run = [&](const char* rpc, Message& request, const std::vector<size_t>& at) -> bool {
      if (at.empty()) return true;
      request.GetReflection()->SetString(&request, request.GetDescriptor()->FindFieldByName("model"), model);
      request.GetReflection()->SetBool(&request, request.GetDescriptor()->FindFieldByName("normalize"), true);
      v1::EmbedResponse out;
      const grpc::Status status = call(req, method_of(rpc), request, &out);
      if (!status.ok()) {
        send_status(res, status);
        return false;
      }
      const v1::Matrix& m = out.embeddings();
      if (rows.empty()) {
        dim = m.dim();
        rows.resize(r.inputs.size() * static_cast<size_t>(dim));
      }
      if (m.dim() != dim || m.rows() != static_cast<int>(at.size())) {
        throw internal_error("the embeddings of " + out.model() + " came back as " + std::to_string(m.rows()) + " x " +
                             std::to_string(m.dim()));
      }
      for (size_t k = 0; k < at.size(); ++k) {
        std::copy_n(m.values().data() + k * static_cast<size_t>(dim), dim, rows.data() + at[k] * static_cast<size_t>(dim));
      }
      model = out.model();
      tokens += out.tokens();
      return true;
    };
    if (!run("refinery.v1.EmbeddingService.EmbedText", texts, text_at)) return;
    if (!run("refinery.v1.EmbeddingService.EmbedImage", images, image_at)) return;
    send_json(res, embeddings_response(r, model, rows, dim, tokens));
  }

  void events(const httplib::Request& req, httplib::Response& res) const {
    v1::WatchJobRequest watch;
    watch.set_id(req.matches[1].str());
    if (req.has_param("from_seq")) watch.set_from_seq(integer_parameter(req.get_param_value("from_seq"), "from_seq"));
    for (const auto& [key, value] : req.params) {
      if (key != "from_seq") throw invalid_argument("query parameter '" + key + "': only from_seq is known here");
    }
    if (req.has_header("Last-Event-ID")) {
      watch.set_from_seq(integer_parameter(req.get_header_value("Last-Event-ID"), "Last-Event-ID") + 1);
    }
    auto stream = std::make_shared<EventStream>();
    forward_credentials(req, stream->ctx);
    stream->reader = jobs->WatchJob(&stream->ctx, watch);
    const bool any = stream->reader->Read(&stream->first);
    if (!any) {
      stream->finished = true;
      const grpc::Status status = stream->reader->Finish();
      if (!status.ok()) return send_status(res, status);
    }
    res.status = 200;
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Accel-Buffering", "no");  // proxies must not hold events back
    res.set_chunked_content_provider(
        "text/event-stream",
        [stream, any](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          bool gone = false;
          if (any) {
            v1::JobEvent event = std::move(stream->first);
            do {
              if (!write(sse_event(event.seq(), event_type(event), proto_to_json(event).dump()))) {
                gone = true;  // the client left: stop the watch
                stream->ctx.TryCancel();
                break;
              }
            } while (stream->reader->Read(&event));
          }
          if (!stream->finished) {
            stream->finished = true;
            const grpc::Status status = stream->reader->Finish();
            if (!gone && !status.ok()) write(sse_event(0, "error", error_body(status)));
          }
          if (!gone) write(sse_event(0, "end", "{}"));
          sink.done();
          return true;
        },
        [stream](bool) {});
  }
};

HttpApi::HttpApi(std::shared_ptr<grpc::Channel> channel, HttpApiOptions options)
    : impl_(std::make_unique<Impl>(std::move(channel), std::move(options))) {}

HttpApi::~HttpApi() = default;

void HttpApi::install(httplib::Server& server) const {
  const Impl* impl = impl_.get();
  for (const ApiRoute& route : api_routes()) {
    httplib::Server::Handler handler = [impl, &route](const httplib::Request& req, httplib::Response& res) {
      try {
        switch (route.kind) {
          case RouteKind::kHealth:
            return send_json(res, R"({"status":"ok"})");
          case RouteKind::kReady: {
            const std::string why = impl->options.not_ready_reason ? impl->options.not_ready_reason() : "";
            if (why.empty()) return send_json(res, R"({"status":"ready"})");
            res.status = 503;
            return res.set_content(ordered_json({{"status", "not ready"}, {"reason", why}}).dump(), kJson);
          }
          case RouteKind::kOpenApi:
            return send_json(res, impl->openapi);
          case RouteKind::kEmbeddings:
            return impl->embeddings(req, res);
          case RouteKind::kEvents:
            return impl->events(req, res);
          case RouteKind::kModelList:
          case RouteKind::kModel:
          case RouteKind::kUnary:
            return impl->unary(route, req, res);
        }
      } catch (...) {
        send_status(res, to_grpc_status(std::current_exception()));
      }
    };
    const std::string pattern = route_pattern(route.path);
    if (std::strcmp(route.method, "GET") == 0) {
      server.Get(pattern, handler);
    } else if (std::strcmp(route.method, "POST") == 0) {
      server.Post(pattern, handler);
    } else {
      server.Delete(pattern, handler);
    }
  }
  // What cpp-httplib answers itself (no route, a body over the limit, a
  // malformed request) gets the same JSON error shape.
  const httplib::Server::HandlerWithResponse on_error = [](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    grpc::StatusCode code = grpc::StatusCode::INVALID_ARGUMENT;
    std::string message = "bad request";
    if (res.status == 404) {
      code = grpc::StatusCode::NOT_FOUND;
      message = "no route " + req.method + " " + req.path + " (see /openapi.json)";
    } else if (res.status == 413) {
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      message = "request body too large (--max-message-mb)";
    }
    const int http = res.status;
    send_status(res, grpc::Status(code, message));
    res.status = http;
    return httplib::Server::HandlerResponse::Handled;
  };
  server.set_error_handler(on_error);
}

}  // namespace refinery
