// The HTTP API against the gRPC services it fronts, on a real in-process
// server and a real HTTP listener, called with cpp-httplib's client: the same
// numbers as gRPC, OpenAI's request and response shapes, JSON errors with
// their HTTP statuses, tokens and roles, job events as Server-Sent Events,
// and an OpenAPI document that covers every route.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/text/bpe_tokenizer.h"
#include "server/http/http_listener.h"
#include "server/http_api/api_routes.h"
#include "server/http_api/base64.h"
#include "server/http_api/http_api.h"
#include "server/job_rpc.h"
#include "server/test_server.h"
#include "support/caption_fixture.h"

namespace refinery {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::TestServer;

const std::string kReader = "reader-token-0123456789";
const std::string kAdmin = "admin-token-0123456789";

// A TestServer with the HTTP API on a free loopback port.
class HttpApiServer {
 public:
  explicit HttpApiServer(ServerConfig config = {}) : server_(std::move(config)) {
    api_ = std::make_unique<HttpApi>(server_.in_process_channel(), HttpApiOptions{});
    HttpListenerOptions options;
    options.name = "HTTP API";
    options.threads = 8;
    options.keep_alive_requests = 100;
    options.max_body_bytes = 8 << 20;
    listener_ = std::make_unique<HttpListener>("127.0.0.1:0", options, [this](httplib::Server& s) { api_->install(s); });
    client_ = std::make_unique<httplib::Client>("127.0.0.1", listener_->port());
    client_->set_read_timeout(120, 0);
  }
  TestServer& grpc() { return server_; }
  httplib::Client& http() { return *client_; }

  // POST a JSON body; the response, which must have come back.
  httplib::Result post(const std::string& path, const json& body, const std::string& token = "") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto r = client_->Post(path, headers, body.dump(), "application/json");
    EXPECT_TRUE(r) << "no answer to POST " << path;
    return r;
  }
  httplib::Result get(const std::string& path, const std::string& token = "") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto r = client_->Get(path, headers);
    EXPECT_TRUE(r) << "no answer to GET " << path;
    return r;
  }

 private:
  TestServer server_;
  std::unique_ptr<HttpApi> api_;
  std::unique_ptr<HttpListener> listener_;
  std::unique_ptr<httplib::Client> client_;
};

std::string data_url(const std::string& fixture_image) {
  return "data:image/png;base64," + base64_encode(testing::read_file(testing::fixture("images/" + fixture_image)));
}

v1::EmbedResponse grpc_texts(TestServer& server, const std::vector<std::string>& texts) {
  v1::EmbedTextRequest req;
  req.set_model("tiny");
  for (const auto& t : texts) req.add_texts(t);
  req.set_normalize(true);
  v1::EmbedResponse out;
  grpc::ClientContext ctx;
  const auto status = server.embedding()->EmbedText(&ctx, req, &out);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return out;
}

v1::EmbedResponse grpc_image(TestServer& server, const std::string& fixture_image) {
  v1::EmbedImageRequest req;
  req.set_model("tiny");
  req.add_images()->set_data(testing::read_file(testing::fixture("images/" + fixture_image)));
  req.set_normalize(true);
  v1::EmbedResponse out;
  grpc::ClientContext ctx;
  const auto status = server.embedding()->EmbedImage(&ctx, req, &out);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return out;
}

// Row `row` of a gRPC answer against an OpenAI embedding (floats as JSON).
void expect_same_row(const v1::EmbedResponse& grpc, int row, const json& embedding) {
  const int dim = grpc.embeddings().dim();
  ASSERT_EQ(embedding.size(), static_cast<size_t>(dim));
  for (int k = 0; k < dim; ++k) {
    ASSERT_EQ(embedding[k].get<float>(), grpc.embeddings().values(row * dim + k)) << "row " << row << " value " << k;
  }
}

json error_of(const httplib::Result& r) {
  const json body = json::parse(r->body);
  EXPECT_TRUE(body.contains("error")) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  return body["error"];
}

TEST(HttpApi, OpenAIEmbeddingsOfTextsAreTheGrpcNumbersWithTheirTokenUsage) {
  HttpApiServer s;
  const std::vector<std::string> texts = {"a photo of a cat", "a diagram!", "x"};
  auto r = s.post("/v1/embeddings", {{"model", "tiny"}, {"input", texts}});
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = json::parse(r->body);
  const v1::EmbedResponse grpc = grpc_texts(s.grpc(), texts);
  EXPECT_EQ(body["object"], "list");
  EXPECT_EQ(body["model"], grpc.model());
  ASSERT_EQ(body["data"].size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(body["data"][i]["object"], "embedding");
    EXPECT_EQ(body["data"][i]["index"], i);
    expect_same_row(grpc, static_cast<int>(i), body["data"][i]["embedding"]);
  }
  // Tokens as the tokenizer makes them: start and end markers included.
  int64_t tokens = 0;
  for (const auto& t : texts) tokens += static_cast<int64_t>(BpeTokenizer::default_instance().encode(t).size()) + 2;
  EXPECT_EQ(body["usage"]["prompt_tokens"], tokens);
  EXPECT_EQ(body["usage"]["total_tokens"], tokens);

  // A bare string is one input. (Compared with a call of its own: the same
  // text in another batch may differ in the last bit.)
  auto one = s.post("/v1/embeddings", {{"input", "x"}});
  ASSERT_EQ(one->status, 200) << one->body;
  expect_same_row(grpc_texts(s.grpc(), {"x"}), 0, json::parse(one->body)["data"][0]["embedding"]);
}

TEST(HttpApi, ImagesAsDataUrlsKeepTheirPlaceAmongTextsAndBase64DecodesToTheSameFloats) {
  HttpApiServer s;
  const json input = {"a photo of a cat", {{"type", "image"}, {"image", data_url("astronaut.png")}},
                      {{"type", "text"}, {"text", "a rocket"}}};
  auto r = s.post("/v1/embeddings", {{"model", "tiny"}, {"input", input}});
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = json::parse(r->body);
  const v1::EmbedResponse texts = grpc_texts(s.grpc(), {"a photo of a cat", "a rocket"});
  const v1::EmbedResponse image = grpc_image(s.grpc(), "astronaut.png");
  expect_same_row(texts, 0, body["data"][0]["embedding"]);
  expect_same_row(image, 0, body["data"][1]["embedding"]);
  expect_same_row(texts, 1, body["data"][2]["embedding"]);

  auto b = s.post("/v1/embeddings", {{"model", "tiny"}, {"input", input}, {"encoding_format", "base64"}});
  ASSERT_EQ(b->status, 200) << b->body;
  const json encoded = json::parse(b->body);
  for (int i = 0; i < 3; ++i) {
    const std::string bytes = base64_decode(encoded["data"][i]["embedding"].get<std::string>(), "embedding");
    std::vector<float> values(bytes.size() / sizeof(float));
    std::memcpy(values.data(), bytes.data(), bytes.size());
    ASSERT_EQ(values.size(), body["data"][i]["embedding"].size());
    for (size_t k = 0; k < values.size(); ++k) EXPECT_EQ(values[k], body["data"][i]["embedding"][k].get<float>());
  }
}

TEST(HttpApi, BadRequestsGetJsonErrorsWithTheStatusOfTheirGrpcCode) {
  HttpApiServer s;
  struct Case {
    json body;
    int status;
    std::string code;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{{"model", "tiny"}}, 400, "INVALID_ARGUMENT", "input"},
      {{{"input", {{1, 2, 3}}}}, 400, "INVALID_ARGUMENT", "token arrays"},
      {{{"input", {{{"type", "image"}, {"image", "https://example.com/cat.png"}}}}}, 400, "INVALID_ARGUMENT",
       "input[0].image: the server fetches no URLs"},
      {{{"input", {{{"type", "image"}, {"image", "data:image/png;base64,@@@@"}}}}}, 400, "INVALID_ARGUMENT",
       "input[0].image: not base64"},
      {{{"input", {{{"type", "image"}, {"image", "data:image/png;base64,aGVsbG8="}}}}}, 400, "INVALID_ARGUMENT",
       "input[0]"},
      {{{"input", "x"}, {"encoding_format", "int8"}}, 400, "INVALID_ARGUMENT", "encoding_format"},
      {{{"input", "x"}, {"dimensions", 7}}, 400, "INVALID_ARGUMENT", "dimensions"},
      {{{"model", "no-such-model"}, {"input", "x"}}, 404, "NOT_FOUND", "no-such-model"},
  };
  for (const auto& c : cases) {
    auto r = s.post("/v1/embeddings", c.body);
    ASSERT_EQ(r->status, c.status) << c.body.dump() << " -> " << r->body;
    const json e = error_of(r);
    EXPECT_EQ(e["code"], c.code) << r->body;
    EXPECT_EQ(e["type"], c.status == 404 ? "not_found_error" : "invalid_request_error");
    EXPECT_NE(e["message"].get<std::string>().find(c.names), std::string::npos) << r->body;
  }
  auto not_json = s.http().Post("/v1/embeddings", "{", "application/json");
  ASSERT_EQ(not_json->status, 400);
  EXPECT_EQ(error_of(not_json)["code"], "INVALID_ARGUMENT");
  auto nowhere = s.get("/v1/nowhere");
  ASSERT_EQ(nowhere->status, 404);
  EXPECT_NE(error_of(nowhere)["message"].get<std::string>().find("/v1/nowhere"), std::string::npos);
  auto unknown_field = s.post("/v1/classify", {{"modle", "tiny"}});
  ASSERT_EQ(unknown_field->status, 400);
  EXPECT_NE(error_of(unknown_field)["message"].get<std::string>().find("modle"), std::string::npos);
  auto mismatch = s.post("/v1/jobs/abc/cancel", {{"id", "xyz"}});
  ASSERT_EQ(mismatch->status, 400);
  EXPECT_NE(error_of(mismatch)["message"].get<std::string>().find("in the path"), std::string::npos);
}

TEST(HttpApi, JsonMirrorsAnswerAsTheirGrpcMethods) {
  HttpApiServer s;
  const std::string png = testing::read_file(testing::fixture("images/chelsea.png"));
  auto r = s.post("/v1/classify", {{"model", "tiny"},
                                   {"images", {{{"data", base64_encode(png)}, {"name", "chelsea.png"}}}},
                                   {"labels", {"cat", "rocket", "cup"}}});
  ASSERT_EQ(r->status, 200) << r->body;
  v1::ClassifyRequest req;
  req.set_model("tiny");
  auto* image = req.add_images();
  image->set_data(png);
  image->set_name("chelsea.png");
  for (const char* l : {"cat", "rocket", "cup"}) req.add_labels(l);
  v1::ClassifyResponse grpc;
  grpc::ClientContext ctx;
  ASSERT_TRUE(s.grpc().embedding()->Classify(&ctx, req, &grpc).ok());
  const json body = json::parse(r->body);
  ASSERT_EQ(body["results"][0]["labels"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto& a = body["results"][0]["labels"][i];
    const auto& b = grpc.results(0).labels(i);
    EXPECT_EQ(a["label"], b.label());
    EXPECT_EQ(a["index"], b.index());
    EXPECT_EQ(a["probability"].get<double>(), b.probability());
    EXPECT_EQ(a["cosine"].get<double>(), b.cosine());
  }

  // OpenAI's model list, with Refinery's fields beside its own.
  auto models = s.get("/v1/models");
  ASSERT_EQ(models->status, 200) << models->body;
  const json list = json::parse(models->body);
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(list["data"][0]["id"], list["data"][0]["ref"]);
  EXPECT_EQ(list["data"][0]["name"], "tiny");
  EXPECT_EQ(list["data"][0]["architecture"]["embed_dim"].is_number(), true) << models->body;
  auto one = s.get("/v1/models/" + list["data"][0]["id"].get<std::string>());
  ASSERT_EQ(one->status, 200);
  EXPECT_EQ(json::parse(one->body)["name"], "tiny");
  EXPECT_EQ(s.get("/v1/models/nope")->status, 404);

  // Query parameters fill a GET's request: an unknown state is named.
  auto jobs = s.get("/v1/jobs?states=JOB_STATE_RUNNING,JOB_STATE_QUEUED");
  ASSERT_EQ(jobs->status, 200) << jobs->body;
  auto bad = s.get("/v1/jobs?states=SLEEPING");
  EXPECT_EQ(bad->status, 400) << bad->body;
  EXPECT_EQ(s.get("/v1/jobs?colour=red")->status, 400);

  EXPECT_EQ(s.get("/health")->status, 200);
  EXPECT_EQ(s.get("/ready")->status, 200);
}

TEST(HttpApi, TokensAndRolesAreTheGrpcOnes) {
  TempDir dir;
  testing::write_file(dir / "tokens", kAdmin + " admin alice\n" + kReader + " reader\n");
  ServerConfig config;
  config.security.auth_tokens = dir / "tokens";
  HttpApiServer s(config);
  auto none = s.post("/v1/embeddings", {{"input", "x"}});
  ASSERT_EQ(none->status, 401) << none->body;
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(error_of(none)["type"], "authentication_error");
  EXPECT_EQ(s.post("/v1/embeddings", {{"input", "x"}}, "wrong-token-0123456789")->status, 401);
  EXPECT_EQ(s.post("/v1/embeddings", {{"input", "x"}}, kReader)->status, 200);
  auto denied = s.post("/v1/models", {{"path", "/tmp/x.safetensors"}}, kReader);
  ASSERT_EQ(denied->status, 403) << denied->body;
  EXPECT_EQ(error_of(denied)["code"], "PERMISSION_DENIED");
  EXPECT_EQ(s.get("/v1/models", kReader)->status, 200);
  // Health, readiness and the API's description stay open.
  EXPECT_EQ(s.get("/health")->status, 200);
  EXPECT_EQ(s.get("/ready")->status, 200);
  EXPECT_EQ(s.get("/openapi.json")->status, 200);
}

struct SseEvent {
  std::string id, type, data;
};

std::vector<SseEvent> parse_sse(const std::string& text) {
  std::vector<SseEvent> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size();
    SseEvent e;
    std::istringstream block(text.substr(start, end - start));
    for (std::string line; std::getline(block, line);) {
      if (line.rfind("id: ", 0) == 0) e.id = line.substr(4);
      if (line.rfind("event: ", 0) == 0) e.type = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = line.substr(6);
    }
    if (!e.type.empty()) out.push_back(e);
    start = end + 2;
  }
  return out;
}

TEST(HttpApi, JobEventsStreamAsServerSentEventsAndResumeFromLastEventId) {
  TempDir dir;
  HttpApiServer s;
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 1, 0});
  auto submitted = s.post("/v1/jobs", {{"spec",
                                        {{"base_model", "tiny"},
                                         {"data", data},
                                         {"batch_size", 2},
                                         {"val_fraction", 0.25},
                                         {"lr", 1e-4},
                                         {"max_steps", 2}}}});
  ASSERT_EQ(submitted->status, 200) << submitted->body;
  const std::string id = json::parse(submitted->body)["id"];

  std::string stream;
  auto r = s.http().Get("/v1/jobs/" + id + "/events", [&](const char* d, size_t n) {
    stream.append(d, n);
    return true;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const auto events = parse_sse(stream);
  ASSERT_GE(events.size(), 4u) << stream;
  EXPECT_EQ(events.back().type, "end");
  // Every event is the gRPC event with its seq as the SSE id, in order.
  const auto grpc_events = testing::watch_all(s.grpc(), id);
  ASSERT_EQ(events.size(), grpc_events.size() + 1);
  for (size_t i = 0; i < grpc_events.size(); ++i) {
    EXPECT_EQ(events[i].id, std::to_string(grpc_events[i].seq()));
    const json e = json::parse(events[i].data);
    EXPECT_EQ(e["seq"], grpc_events[i].seq());
    EXPECT_TRUE(e.contains(events[i].type)) << events[i].type << ": " << events[i].data;
  }
  EXPECT_EQ(json::parse(events[grpc_events.size() - 1].data)["state"]["state"], "JOB_STATE_SUCCEEDED");

  // A reconnecting EventSource sends the last id it saw: only what follows.
  std::string rest;
  httplib::Headers last = {{"Last-Event-ID", events[1].id}};
  s.http().Get("/v1/jobs/" + id + "/events", last, [&](const char* d, size_t n) {
    rest.append(d, n);
    return true;
  });
  const auto later = parse_sse(rest);
  ASSERT_EQ(later.size(), events.size() - 2);
  EXPECT_EQ(later.front().id, events[2].id);

  // The refined model's lineage metrics (a protobuf map) print with their
  // keys sorted, whatever order protobuf keeps them in.
  auto models = s.get("/v1/models");
  ASSERT_EQ(models->status, 200);
  bool seen_lineage = false;
  const json listed = json::parse(models->body);
  for (const auto& m : listed["data"]) {
    if (!m.contains("lineage")) continue;
    std::vector<std::string> keys;
    for (auto it = m["lineage"]["metrics"].begin(); it != m["lineage"]["metrics"].end(); ++it) keys.push_back(it.key());
    ASSERT_GE(keys.size(), 3u) << m.dump();
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end())) << m["lineage"]["metrics"].dump();
    seen_lineage = true;
  }
  EXPECT_TRUE(seen_lineage) << models->body;

  auto missing = s.get("/v1/jobs/no-such-job/events");
  ASSERT_EQ(missing->status, 404) << missing->body;
  EXPECT_EQ(error_of(missing)["code"], "NOT_FOUND");
}

TEST(HttpApi, TheOpenApiDocumentDescribesEveryRouteAndEverySchemaItRefersTo) {
  HttpApiServer s;
  auto r = s.get("/openapi.json");
  ASSERT_EQ(r->status, 200);
  const json doc = json::parse(r->body);
  EXPECT_EQ(doc["openapi"], "3.0.3");
  for (const ApiRoute& route : api_routes()) {
    std::string verb = route.method;
    for (char& c : verb) c = static_cast<char>(std::tolower(c));
    EXPECT_TRUE(doc["paths"].contains(route.path) && doc["paths"][route.path].contains(verb))
        << route.method << " " << route.path;
  }
  // Every $ref resolves.
  std::set<std::string> refs;
  std::function<void(const json&)> walk = [&](const json& j) {
    if (j.is_object()) {
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "$ref") refs.insert(it.value().get<std::string>());
        walk(it.value());
      }
    } else if (j.is_array()) {
      for (const auto& v : j) walk(v);
    }
  };
  walk(doc);
  ASSERT_FALSE(refs.empty());
  for (const auto& ref : refs) {
    const std::string prefix = "#/components/schemas/";
    ASSERT_EQ(ref.rfind(prefix, 0), 0u) << ref;
    EXPECT_TRUE(doc["components"]["schemas"].contains(ref.substr(prefix.size()))) << ref;
  }
  // The schemas are the messages' fields.
  EXPECT_TRUE(doc["components"]["schemas"]["refinery.v1.ClassifyRequest"]["properties"].contains("labels"));
}

}  // namespace
}  // namespace refinery
