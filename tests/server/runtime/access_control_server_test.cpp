// Tokens and roles through a real gRPC server: the status a client sees for
// each role, and the count on /metrics by method and code.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "server/test_server.h"

namespace refinery {
namespace {

using testing::TempDir;
using testing::TestServer;

const std::string kAdmin = "admin-token-0123456789abcdef";
const std::string kTrainer = "trainer-token-0123456789abcdef";
const std::string kReader = "reader-token-0123456789abcdef";

std::string standard_tokens(const TempDir& dir) {
  testing::write_file(dir / "tokens", kAdmin + " admin alice\n" + kTrainer + " trainer bob\n" + kReader + " reader\n");
  return dir / "tokens";
}

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
  EXPECT_NE(metrics.find("refinery_grpc_calls_total{code=\"UNAUTHENTICATED\",method=\"ListModels\"} 2"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("refinery_grpc_calls_total{code=\"PERMISSION_DENIED\",method=\"DeleteModel\"} 2"),
            std::string::npos);
  EXPECT_NE(metrics.find("refinery_grpc_calls_total{code=\"OK\",method=\"DeleteModel\"} 1"), std::string::npos);
}

TEST(AccessControl, AServerWithoutTokensLetsEveryCallerIn) {
  TestServer server;
  EXPECT_TRUE(list_models(server, "").ok());
  EXPECT_TRUE(list_models(server, "whatever-token-they-send").ok());
}

}  // namespace
}  // namespace refinery
