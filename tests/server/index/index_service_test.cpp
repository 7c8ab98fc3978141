#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/test_server.h"

namespace refinery {
namespace {

using testing::TestServer;

std::vector<std::string> fixture_texts() {
  return nlohmann::json::parse(testing::read_file(testing::fixture("texts.json"))).get<std::vector<std::string>>();
}

grpc::Status create(v1::IndexService::Stub& stub, const std::string& name, v1::IndexKind kind = v1::INDEX_KIND_FLAT) {
  v1::CreateIndexRequest req;
  req.set_name(name);
  req.mutable_options()->set_kind(kind);
  v1::IndexInfo info;
  grpc::ClientContext ctx;
  return stub.CreateIndex(&ctx, req, &info);
}

grpc::Status add_texts(v1::IndexService::Stub& stub, const std::string& index, const std::vector<std::string>& texts,
                       int first_id = 0, v1::AddItemsResponse* out = nullptr) {
  v1::AddItemsRequest req;
  req.set_index(index);
  for (size_t i = 0; i < texts.size(); ++i) {
    auto* item = req.add_items();
    item->set_id("t" + std::to_string(first_id + i));
    item->set_text(texts[i]);
    item->set_metadata_json(nlohmann::json{{"row", first_id + i}}.dump());
  }
  v1::AddItemsResponse resp;
  grpc::ClientContext ctx;
  auto s = stub.AddItems(&ctx, req, &resp);
  if (out) *out = resp;
  return s;
}

v1::SearchResponse search_text(v1::IndexService::Stub& stub, const std::string& index, const std::string& q, int k,
                               grpc::Status* status = nullptr) {
  v1::SearchRequest req;
  req.set_index(index);
  req.set_text(q);
  req.set_k(k);
  v1::SearchResponse resp;
  grpc::ClientContext ctx;
  auto s = stub.Search(&ctx, req, &resp);
  if (status) *status = s;
  return resp;
}

TEST(IndexService, AddedTextsAreFoundByTheirOwnTextWithMetadata) {
  TestServer server;
  auto stub = server.indexes();
  ASSERT_TRUE(create(*stub, "captions").ok());
  const auto texts = fixture_texts();
  std::vector<std::string> some(texts.begin(), texts.begin() + 40);
  v1::AddItemsResponse added;
  ASSERT_TRUE(add_texts(*stub, "captions", some, 0, &added).ok());
  EXPECT_EQ(added.size(), 40);
  for (int i : {0, 7, 23}) {
    auto resp = search_text(*stub, "captions", some[i], 5);
    ASSERT_GE(resp.hits_size(), 1);
    // Duplicate captions in the fixture tie at 1.0; the top hit must be one
    // with exactly this text.
    EXPECT_NEAR(resp.hits(0).score(), 1.0, 1e-4) << some[i];
    const int row = nlohmann::json::parse(resp.hits(0).metadata_json())["row"];
    EXPECT_EQ(some[row], some[i]);
  }
}

TEST(IndexService, ImagesAndVectorsShareTheIndexAndDeletedItemsAreGone) {
  TestServer server;
  auto stub = server.indexes();
  ASSERT_TRUE(create(*stub, "mixed", v1::INDEX_KIND_HNSW).ok());
  v1::AddItemsRequest req;
  req.set_index("mixed");
  auto* img = req.add_items();
  img->set_id("rocket");
  img->mutable_image()->set_data(testing::read_file(testing::fixture("images/rocket.jpg")));
  auto* vec = req.add_items();
  vec->set_id("v");
  for (int i = 0; i < 32; ++i) vec->mutable_vector()->add_values(i == 3 ? 1.f : 0.f);
  v1::AddItemsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->AddItems(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.size(), 2);
  v1::SearchRequest sreq;
  sreq.set_index("mixed");
  for (int i = 0; i < 32; ++i) sreq.mutable_vector()->add_values(i == 3 ? 2.f : 0.f);
  v1::SearchResponse sresp;
  grpc::ClientContext sctx;
  ASSERT_TRUE(stub->Search(&sctx, sreq, &sresp).ok());
  ASSERT_GE(sresp.hits_size(), 1);
  EXPECT_EQ(sresp.hits(0).id(), "v");
  EXPECT_NEAR(sresp.hits(0).score(), 1.0, 1e-5);
  v1::DeleteItemsRequest dreq;
  dreq.set_index("mixed");
  dreq.add_ids("v");
  v1::DeleteItemsResponse dresp;
  grpc::ClientContext dctx;
  ASSERT_TRUE(stub->DeleteItems(&dctx, dreq, &dresp).ok());
  EXPECT_EQ(dresp.deleted(), 1);
  grpc::ClientContext sctx2;
  ASSERT_TRUE(stub->Search(&sctx2, sreq, &sresp).ok());
  for (const auto& h : sresp.hits()) EXPECT_NE(h.id(), "v");
}

TEST(IndexService, BadRequestsNameTheCulprit) {
  TestServer server;
  auto stub = server.indexes();
  ASSERT_TRUE(create(*stub, "idx").ok());
  auto s = create(*stub, "idx");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("idx"), std::string::npos);
  grpc::Status st;
  search_text(*stub, "nope", "a cat", 3, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("nope"), std::string::npos);
  ASSERT_TRUE(add_texts(*stub, "idx", {"a cat"}).ok());
  s = add_texts(*stub, "idx", {"a dog"});  // id t0 again
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("t0"), std::string::npos) << s.error_message();
  v1::AddItemsRequest req;
  req.set_index("idx");
  auto* v = req.add_items();
  v->set_id("short");
  v->mutable_vector()->add_values(1.f);
  v1::AddItemsResponse resp;
  grpc::ClientContext ctx;
  s = stub->AddItems(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("id 'short'"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("needs 32"), std::string::npos) << s.error_message();
  // The index still answers.
  auto ok = search_text(*stub, "idx", "a cat", 1, &st);
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(ok.hits(0).id(), "t0");
}

TEST(IndexService, IndexesSurviveARestart) {
  testing::TempDir data;
  std::vector<std::string> ids_before;
  const auto texts = fixture_texts();
  {
    TestServer server({}, data.path());
    auto stub = server.indexes();
    ASSERT_TRUE(create(*stub, "kept").ok());
    ASSERT_TRUE(add_texts(*stub, "kept", std::vector<std::string>(texts.begin(), texts.begin() + 20)).ok());
    const auto before = search_text(*stub, "kept", "a dog on the beach", 5);
    for (const auto& h : before.hits()) ids_before.push_back(h.id());
  }
  TestServer restarted({}, data.path());
  auto stub = restarted.indexes();
  std::vector<std::string> ids_after;
  const auto after = search_text(*stub, "kept", "a dog on the beach", 5);
  for (const auto& h : after.hits()) ids_after.push_back(h.id());
  EXPECT_EQ(ids_after.size(), 5u);
  EXPECT_EQ(ids_before, ids_after);
  v1::ListIndexesResponse list;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->ListIndexes(&ctx, {}, &list).ok());
  ASSERT_EQ(list.indexes_size(), 1);
  EXPECT_EQ(list.indexes(0).size(), 20);
  EXPECT_EQ(list.indexes(0).model(), "tiny@1");
}

}  // namespace
}  // namespace refinery
