// Tokens and roles: the tokens file as an operator writes it, the checks as a
// caller meets them, and the same through a real gRPC server.
#include "server/runtime/access_control.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "core/base/error.h"
#include "server/test_server.h"

namespace refinery {
namespace {

using testing::TempDir;
using testing::TestServer;

const std::string kAdmin = "admin-token-0123456789abcdef";
const std::string kTrainer = "trainer-token-0123456789abcdef";
const std::string kReader = "reader-token-0123456789abcdef";

std::string tokens_file(const TempDir& dir, const std::string& text, const std::string& name = "tokens") {
  testing::write_file(dir / name, text);
  return dir / name;
}

std::string standard_tokens(const TempDir& dir) {
  return tokens_file(dir, "# who may call refineryd\n" + kAdmin + " admin alice\n" + kTrainer + " trainer   bob  # CI\n\n" +
                              kReader + " reader\n");
}

Error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error thrown";
  return Error(ErrorCode::kInternal, "(no error)");
}

TEST(AccessControl, EveryMethodOfEveryServiceHasARole) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  int methods = 0;
  for (const char* name : {"refinery.v1.EmbeddingService", "refinery.v1.IndexService", "refinery.v1.JobService",
                           "refinery.v1.ModelService"}) {
    const auto* service = pool->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i, ++methods) {
      EXPECT_NO_THROW(required_role(service->method(i)->name())) << service->method(i)->full_name();
    }
  }
  EXPECT_GE(methods, 27);
  EXPECT_EQ(error_of([] { required_role("NoSuchMethod"); }).code(), ErrorCode::kInternal);
}

TEST(AccessControl, ReadersServeTrainersTrainAdminsManageModels) {
  EXPECT_EQ(required_role("EmbedImage"), Role::kReader);
  EXPECT_EQ(required_role("Search"), Role::kReader);
  EXPECT_EQ(required_role("WatchJob"), Role::kReader);
  EXPECT_EQ(required_role("SubmitJob"), Role::kTrainer);
  EXPECT_EQ(required_role("AddItems"), Role::kTrainer);
  EXPECT_EQ(required_role("ImportModel"), Role::kAdmin);
  EXPECT_EQ(required_role("ExportModel"), Role::kAdmin);
  EXPECT_EQ(required_role("DropIndex"), Role::kAdmin);
}

TEST(AccessControl, ReadsTheTextFormWithNamesCommentsAndBlankLines) {
  TempDir dir;
  const auto entries = read_tokens_file(standard_tokens(dir));
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].principal.name, "alice");
  EXPECT_EQ(entries[0].principal.role, Role::kAdmin);
  EXPECT_EQ(entries[1].principal.name, "bob");
  EXPECT_EQ(entries[1].principal.role, Role::kTrainer);
  EXPECT_EQ(entries[2].principal.name, "line 5");
  EXPECT_EQ(entries[2].token, kReader);
}

TEST(AccessControl, ReadsTheJsonForms) {
  TempDir dir;
  const std::string array = "[{\"token\": \"" + kAdmin + "\", \"role\": \"admin\", \"name\": \"ops\"}, {\"token\": \"" +
                            kReader + "\", \"role\": \"reader\"}]";
  for (const auto& text : {array, "{\"tokens\": " + array + "}"}) {
    const auto entries = read_tokens_file(tokens_file(dir, text));
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].principal.name, "ops");
    EXPECT_EQ(entries[1].principal.name, "entry 2");
    EXPECT_EQ(entries[1].principal.role, Role::kReader);
  }
}

TEST(AccessControl, ABadFileIsRefusedNamingTheLineAndNeverTheToken) {
  TempDir dir;
  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> cases = {
      {kAdmin + " admin\n" + kReader + " superuser\n", "line 2: unknown role 'superuser'"},
      {"\n\nshort-token admin\n", "line 3: token too short (11 characters"},
      {kAdmin + "\n", "line 1: expected `TOKEN ROLE [NAME]`, found 1 field"},
      {kAdmin + " admin a b\n", "line 1: expected `TOKEN ROLE [NAME]`, found 4 field"},
      {kAdmin + " admin alice\n" + kAdmin + " reader bob\n", "bob repeats the token of alice"},
      {"# nobody\n", "no tokens"},
      {"[{\"token\": \"" + kAdmin + "\", \"role\": \"root\"}]", "entry 1: unknown role 'root'"},
      {"[{\"token\": \"" + kAdmin + "\", \"role\": \"admin\", \"expires\": 1}]", "entry 1: unknown key 'expires'"},
      {"[{\"token\": \"" + kAdmin + "\", \"role\": \"admin\"", "not valid JSON"},
  };
  for (const auto& c : cases) {
    const auto path = tokens_file(dir, c.text);
    const Error e = error_of([&] { read_tokens_file(path); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << c.text;
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(kAdmin), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(kReader), std::string::npos) << e.what();
  }
  EXPECT_NE(std::string(error_of([&] { read_tokens_file(dir / "absent"); }).what()).find("--auth-tokens"),
            std::string::npos);
}

TEST(AccessControl, AMissingOrUnknownTokenIsUnauthenticatedARoleTooLowIsPermissionDenied) {
  TempDir dir;
  AccessControl access(standard_tokens(dir));
  EXPECT_EQ(access.summary(), "3 token(s): 1 admin, 1 trainer, 1 reader");

  const Error none = error_of([&] { access.authorize_header("", "EmbedText"); });
  EXPECT_EQ(none.code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(std::string(none.what()).find("EmbedText needs a token"), std::string::npos) << none.what();
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kAdmin + "x", "EmbedText"); }).code(),
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(error_of([&] { access.authorize_header("Basic " + kAdmin, "EmbedText"); }).code(),
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kAdmin.substr(0, 20), "EmbedText"); }).code(),
            ErrorCode::kUnauthenticated);

  const Error low = error_of([&] { access.authorize_header("Bearer " + kReader, "SubmitJob"); });
  EXPECT_EQ(low.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(std::string(low.what()).find("SubmitJob needs role trainer; the token of line 5 has role reader"),
            std::string::npos)
      << low.what();
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kTrainer, "ImportModel"); }).code(),
            ErrorCode::kPermissionDenied);

  EXPECT_EQ(access.authorize_header("Bearer " + kReader, "Search").name, "line 5");
  EXPECT_EQ(access.authorize_header("bearer " + kTrainer, "SubmitJob").name, "bob");
  EXPECT_EQ(access.authorize_header("Bearer " + kAdmin, "DeleteModel").role, Role::kAdmin);
  EXPECT_EQ(access.authorize_header("Bearer " + kAdmin, "EmbedText").name, "alice");  // admin may read
}

TEST(AccessControl, AReloadTakesEffectAndABrokenFileKeepsTheOldTokens) {
  TempDir dir;
  const auto path = standard_tokens(dir);
  AccessControl access(path);
  const std::string fresh = "fresh-token-0123456789abcdef";
  tokens_file(dir, fresh + " trainer carol\n" + kAdmin + " reader alice\n");
  access.reload();
  EXPECT_EQ(access.authorize_header("Bearer " + fresh, "SubmitJob").name, "carol");
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kTrainer, "GetJob"); }).code(),
            ErrorCode::kUnauthenticated);  // bob's token is gone
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kAdmin, "DeleteModel"); }).code(),
            ErrorCode::kPermissionDenied);  // alice was demoted

  tokens_file(dir, fresh + " wizard\n");
  EXPECT_EQ(error_of([&] { access.reload(); }).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(access.authorize_header("Bearer " + fresh, "SubmitJob").name, "carol");
}

// Through a real gRPC server: the status a client sees, and the count on
// /metrics by method and code.
grpc::Status list_models(TestServer& server, const std::string& token) {
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::ListModelsResponse resp;
  return server.models()->ListModels(&ctx, v1::ListModelsRequest(), &resp);
}

grpc::Status delete_model(TestServer& server, const std::string& token, const std::string& model) {
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::DeleteModelRequest req;
  req.set_model(model);
  v1::DeleteModelResponse resp;
  return server.models()->DeleteModel(&ctx, req, &resp);
}

TEST(AccessControl, AServerWithTokensAnswersEachCallerByRole) {
  TempDir dir;
  ServerConfig config;
  config.security.auth_tokens = standard_tokens(dir);
  TestServer server(config);

  EXPECT_EQ(list_models(server, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(list_models(server, "not-a-known-token-at-all").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(list_models(server, kReader).ok());

  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + kReader);
    v1::EmbedTextRequest req;
    req.add_texts("a photo of a cat");
    v1::EmbedResponse resp;
    const auto s = server.embedding()->EmbedText(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.embeddings().rows(), 1);
  }

  const auto denied = delete_model(server, kReader, "tiny");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(denied.error_message().find("DeleteModel needs role admin"), std::string::npos) << denied.error_message();
  EXPECT_EQ(delete_model(server, kTrainer, "tiny").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(list_models(server, kReader).ok());
  // The model is still there: the refused calls did nothing.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + kReader);
  v1::GetModelRequest get;
  get.set_model("tiny");
  v1::ModelInfo info;
  EXPECT_TRUE(server.models()->GetModel(&ctx, get, &info).ok());
  EXPECT_TRUE(delete_model(server, kAdmin, "tiny").ok());

  const std::string metrics = server.metrics().serialize();
  EXPECT_NE(metrics.find("refinery_grpc_calls_total{method=\"ListModels\",code=\"UNAUTHENTICATED\"} 2"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("refinery_grpc_calls_total{method=\"DeleteModel\",code=\"PERMISSION_DENIED\"} 2"),
            std::string::npos);
  EXPECT_NE(metrics.find("refinery_grpc_calls_total{method=\"DeleteModel\",code=\"OK\"} 1"), std::string::npos);
}

TEST(AccessControl, AServerWithoutTokensLetsEveryCallerIn) {
  TestServer server;
  EXPECT_TRUE(list_models(server, "").ok());
  EXPECT_TRUE(list_models(server, "whatever-token-they-send").ok());
}

}  // namespace
}  // namespace refinery
