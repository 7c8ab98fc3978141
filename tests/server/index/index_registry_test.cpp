// IndexRegistry: named indexes that survive restarts and crashes. What a
// user notices: an index comes back after a restart with the same answers
// (IVF cells included), one corrupt index does not take the others (or the
// server) down, a crash mid-checkpoint serves the last good state, and a
// failed write loses nothing.
#include "server/index/index_registry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/base/error.h"
#include "support/fixture.h"
#include "support/index_data.h"
#include "support/errors.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;
using refinery::testing::TempDir;

using testing::make_ids;
using testing::random_vectors;

using testing::expect_error;

bool mentions(const Error& e, const std::string& what) { return std::string(e.what()).find(what) != std::string::npos; }

IndexOptions kind(IndexKind k) {
  IndexOptions o;
  o.kind = k;
  return o;
}

std::vector<std::string> search_ids(const IndexRegistry& registry, const std::string& name, const float* query, int k) {
  auto results = registry.get(name)->index()->search(query, 1, k);
  std::vector<std::string> ids;
  for (const auto& hit : results[0]) ids.push_back(hit.id);
  return ids;
}

TEST(IndexRegistryTest, CreateListGetAndDrop) {
  TempDir tmp;
  IndexRegistry registry(tmp.path());
  EXPECT_TRUE(registry.list().empty());
  IndexInfo info = registry.create("photos", "clip-b32@2", 16, kind(IndexKind::kHnsw));
  EXPECT_EQ(info.name, "photos");
  EXPECT_EQ(info.model, "clip-b32@2");
  EXPECT_EQ(info.dim, 16);
  EXPECT_EQ(info.options.kind, IndexKind::kHnsw);
  EXPECT_EQ(info.options.hnsw_m, 32);
  EXPECT_GT(info.created_unix_ms, 0);
  EXPECT_EQ(info.size, 0);
  registry.create("docs", "clip-b32@2", 16, kind(IndexKind::kIvf));

  auto list = registry.list();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "docs");
  EXPECT_FALSE(list[0].trained);  // IVF: no cells before enough items
  EXPECT_EQ(list[1].name, "photos");
  EXPECT_TRUE(fs::exists(tmp / "indexes/photos/index.json"));

  auto data = random_vectors(3, 16, 1);
  auto r = registry.add("photos", {"a", "b", "c"}, data.data(), 3, {"{\"f\":\"a.jpg\"}", "{}", "{}"});
  EXPECT_EQ(r.added, 3u);
  EXPECT_EQ(r.size, 3u);
  auto hits = registry.get("photos")->index()->search(data.data(), 1, 1)[0];
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "a");
  EXPECT_EQ(hits[0].metadata_json, "{\"f\":\"a.jpg\"}");
  EXPECT_EQ(registry.get("photos")->info().size, 3);

  registry.drop("photos");
  EXPECT_FALSE(fs::exists(tmp / "indexes/photos"));
  auto e = expect_error([&] { registry.get("photos"); }, ErrorCode::kNotFound);
  EXPECT_TRUE(mentions(e, "\"photos\"")) << e.what();
  e = expect_error([&] { registry.drop("photos"); }, ErrorCode::kNotFound);
  EXPECT_TRUE(mentions(e, "\"photos\"")) << e.what();
  e = expect_error([&] { registry.add("photos", {"d"}, data.data(), 1); }, ErrorCode::kNotFound);
  EXPECT_EQ(registry.list().size(), 1u);
  registry.create("photos", "clip-b32@3", 8, {});  // the name is free again
}

TEST(IndexRegistryTest, BadNamesModelsAndDuplicatesAreRejected) {
  TempDir tmp;
  IndexRegistry registry(tmp.path());
  for (const std::string& name : std::vector<std::string>{"", ".", "..", "a/b", "../escape", "sp ace", "tilde~x", std::string(129, 'n')}) {
    auto e = expect_error([&] { registry.create(name, "m@1", 4, {}); }, ErrorCode::kInvalidArgument);
    EXPECT_TRUE(mentions(e, "\"" + name + "\"")) << e.what();
  }
  registry.create(std::string(128, 'n'), "m@1", 4, {});
  registry.create("a.b_c-D9", "m@1", 4, {});
  for (const std::string ref : {"", "model", "@1", "model@", "a@b@c"}) {
    auto e = expect_error([&] { registry.create("ok", ref, 4, {}); }, ErrorCode::kInvalidArgument);
    EXPECT_TRUE(mentions(e, "\"" + ref + "\"")) << e.what();
  }
  expect_error([&] { registry.create("ok", "m@1", 0, {}); }, ErrorCode::kInvalidArgument);
  IndexOptions bad;
  bad.ivf_nlist = -1;
  expect_error([&] { registry.create("ok", "m@1", 4, bad); }, ErrorCode::kInvalidArgument);

  auto e = expect_error([&] { registry.create("a.b_c-D9", "m@1", 4, {}); }, ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(mentions(e, "already exists")) << e.what();
  EXPECT_EQ(registry.list().size(), 2u);  // the rejected calls left nothing behind
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "indexes"), fs::directory_iterator()), 2);
}

TEST(IndexRegistryTest, IndexesSurviveARestartWithTheSameAnswers) {
  TempDir tmp;
  const int dim = 16;
  auto data = random_vectors(2100, dim, 2);
  auto ids = make_ids(2100, "doc-");
  auto queries = random_vectors(10, dim, 3);
  std::vector<std::vector<std::string>> before;
  std::vector<IndexInfo> infos;
  {
    IndexRegistryOptions no_thread;
    no_thread.maintain_every = std::chrono::milliseconds(0);
    IndexRegistry registry(tmp.path(), no_thread);
    registry.create("flat", "m@1", dim, {});
    registry.create("ivf", "m@1", dim, kind(IndexKind::kIvf));
    registry.create("hnsw", "m@2", dim, kind(IndexKind::kHnsw));
    for (const char* name : {"flat", "ivf", "hnsw"}) {
      registry.add(name, ids, data.data(), ids.size(), std::vector<std::string>(ids.size(), "{\"x\":1}"));
      if (std::string(name) == "ivf") {
        EXPECT_FALSE(registry.get(name)->info().trained);  // k-means is the upkeep's job, not the caller's
        registry.maintain();
        EXPECT_EQ(registry.get(name)->persistence().checkpoints, 1u);  // the new cells are kept on disk
      }
      auto removed = registry.remove(name, {"doc-0", "doc-1", "nope"});
      EXPECT_EQ(removed.deleted, 2u);
      EXPECT_EQ(removed.size, 2098u);
      for (size_t q = 0; q < 10; ++q) before.push_back(search_ids(registry, name, &queries[q * dim], 10));
    }
    infos = registry.list();
    EXPECT_TRUE(infos[1].trained);  // "ivf" trained on its 2100 items by maintain()
  }
  IndexRegistry restarted(tmp.path());
  auto after_infos = restarted.list();
  ASSERT_EQ(after_infos.size(), infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    EXPECT_EQ(after_infos[i].name, infos[i].name);
    EXPECT_EQ(after_infos[i].model, infos[i].model);
    EXPECT_EQ(after_infos[i].dim, infos[i].dim);
    EXPECT_EQ(after_infos[i].options.kind, infos[i].options.kind);
    EXPECT_EQ(after_infos[i].created_unix_ms, infos[i].created_unix_ms);
    EXPECT_EQ(after_infos[i].size, infos[i].size);
    EXPECT_EQ(after_infos[i].trained, infos[i].trained);
  }
  size_t at = 0;
  for (const char* name : {"flat", "ivf", "hnsw"}) {
    for (size_t q = 0; q < 10; ++q) EXPECT_EQ(search_ids(restarted, name, &queries[q * dim], 10), before[at++]) << name;
    EXPECT_FALSE(restarted.get(name)->index()->contains("doc-0"));
  }
}

TEST(IndexRegistryTest, ACorruptIndexDoesNotStopTheOthers) {
  TempDir tmp;
  auto data = random_vectors(20, 8, 4);
  {
    IndexRegistry registry(tmp.path());
    for (const char* name : {"good", "rotten", "garbled"}) {
      registry.create(name, "m@1", 8, {});
      registry.add(name, make_ids(10, "i"), data.data(), 10);
      registry.add(name, make_ids(10, "j"), &data[80], 10);
    }
  }
  // Bit rot inside the first logged change of "rotten".
  const std::string rotten_log = tmp / "indexes/rotten/log/00000000000000000000.log";
  std::string bytes = refinery::testing::read_file(rotten_log);
  bytes[16 + 16 + 40] ^= 0x01;
  refinery::testing::write_file(rotten_log, bytes);
  refinery::testing::write_file(tmp / "indexes/garbled/index.json", "{\"name\": ");
  refinery::testing::write_file(tmp / "indexes/stray-file", "not a folder");

  IndexRegistry registry(tmp.path());
  auto list = registry.list();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "good");
  EXPECT_EQ(list[0].size, 20);
  EXPECT_EQ(search_ids(registry, "good", data.data(), 1), std::vector<std::string>{"i0"});

  auto broken = registry.broken();
  ASSERT_EQ(broken.size(), 2u);
  EXPECT_NE(broken["rotten"].find(rotten_log + ": record at byte 16 is corrupt"), std::string::npos)
      << broken["rotten"];
  EXPECT_NE(broken["garbled"].find("index.json"), std::string::npos) << broken["garbled"];
  auto e = expect_error([&] { registry.get("rotten"); }, ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(mentions(e, rotten_log)) << e.what();
  expect_error([&] { registry.create("rotten", "m@1", 8, {}); }, ErrorCode::kFailedPrecondition);

  // An operator can drop the broken index and start over.
  registry.drop("rotten");
  EXPECT_FALSE(fs::exists(tmp / "indexes/rotten"));
  registry.create("rotten", "m@1", 8, {});
  EXPECT_EQ(registry.list().size(), 2u);
}

TEST(IndexRegistryTest, CrashLeftoversAreCleanedUpAndTheLastGoodStateServed) {
  TempDir tmp;
  const int dim = 8;
  auto data = random_vectors(30, dim, 5);
  {
    IndexRegistry registry(tmp.path());
    registry.create("kept", "m@1", dim, kind(IndexKind::kHnsw));
    registry.add("kept", make_ids(10, "good-"), data.data(), 10);
  }
  // A save that died half-way through writing its temporary copy...
  const std::string vectors = tmp / "indexes/kept/vectors";
  fs::copy(vectors, vectors + ".tmp");
  fs::remove(vectors + ".tmp/manifest.json");
  refinery::testing::write_file(vectors + ".tmp/vectors.f32", "torn");
  // ...and a create and a drop that died before finishing.
  fs::create_directories(tmp / "indexes/half~creating/vectors");
  fs::create_directories(tmp / "indexes/gone~dropping/vectors");

  IndexRegistry registry(tmp.path());
  ASSERT_EQ(registry.list().size(), 1u);
  EXPECT_EQ(registry.get("kept")->info().size, 10);
  EXPECT_EQ(search_ids(registry, "kept", data.data(), 1), std::vector<std::string>{"good-0"});
  EXPECT_FALSE(fs::exists(vectors + ".tmp"));
  EXPECT_FALSE(fs::exists(tmp / "indexes/half~creating"));
  EXPECT_FALSE(fs::exists(tmp / "indexes/gone~dropping"));
  EXPECT_TRUE(registry.broken().empty());
  // And it keeps taking changes.
  registry.add("kept", {"new"}, &data[20 * dim], 1);
  EXPECT_EQ(registry.get("kept")->info().size, 11);
}

TEST(IndexRegistryTest, RejectedChangesPersistNothing) {
  TempDir tmp;
  auto data = random_vectors(4, 4, 6);
  {
    IndexRegistry registry(tmp.path());
    registry.create("x", "m@1", 4, {});
    registry.add("x", {"a", "b"}, data.data(), 2);
    auto e = expect_error([&] { registry.add("x", {"c", "a"}, data.data(), 2); }, ErrorCode::kInvalidArgument);
    EXPECT_TRUE(mentions(e, "\"a\"")) << e.what();
    e = expect_error([&] { registry.add("x", {"c", "d"}, {std::vector<float>(4, 1.0f), std::vector<float>(5, 1.0f)}); },
                     ErrorCode::kInvalidArgument);
    EXPECT_TRUE(mentions(e, "item 1 (id \"d\")")) << e.what();
    auto upsert = registry.add("x", {"a"}, &data[8], 1, {"{\"v\":2}"}, /*upsert=*/true);
    EXPECT_EQ(upsert.replaced, 1u);
    EXPECT_EQ(upsert.size, 2u);
    EXPECT_EQ(registry.remove("x", {"zzz"}).deleted, 0u);
  }
  IndexRegistry registry(tmp.path());
  auto index = registry.get("x")->index();
  EXPECT_EQ(index->size(), 2u);
  EXPECT_FALSE(index->contains("c"));
  auto hit = index->search(std::vector<float>(&data[8], &data[12]), 1)[0];
  EXPECT_EQ(hit.id, "a");
  EXPECT_EQ(hit.metadata_json, "{\"v\":2}");
}

TEST(IndexRegistryTest, AFailedLogWriteLeavesTheIndexAsItIsOnDisk) {
  TempDir tmp;
  const int dim = 8;
  auto data = random_vectors(210, dim, 7);
  IndexRegistry registry(tmp.path());
  registry.create("x", "m@1", dim, {});
  registry.add("x", make_ids(10, "old-"), data.data(), 10);

  // Writes past 4 KiB now fail: the next log append dies.
  bool threw = false;
  {
    const testing::FileSizeLimit full_disk(4096);
    try {
      registry.add("x", make_ids(200, "new-"), &data[10 * dim], 200);
    } catch (const Error& e) {
      threw = true;
      EXPECT_TRUE(mentions(e, ".log")) << e.what();
    }
  }
  ASSERT_TRUE(threw);

  EXPECT_EQ(registry.get("x")->info().size, 10);
  EXPECT_FALSE(registry.get("x")->index()->contains("new-0"));
  EXPECT_EQ(search_ids(registry, "x", &data[10 * dim], 10).size(), 10u);
  EXPECT_EQ(IndexRegistry(tmp.path()).get("x")->info().size, 10);
  registry.add("x", make_ids(200, "new-"), &data[10 * dim], 200);  // fine once the disk is
  EXPECT_EQ(IndexRegistry(tmp.path()).get("x")->info().size, 210);
}

TEST(IndexRegistryTest, AHandleOutlivesADrop) {
  TempDir tmp;
  auto data = random_vectors(2, 4, 8);
  IndexRegistry registry(tmp.path());
  registry.create("x", "m@1", 4, {});
  registry.add("x", {"a", "b"}, data.data(), 2);
  auto handle = registry.get("x");
  registry.drop("x");
  EXPECT_EQ(handle->index()->search(data.data(), 1, 2)[0].size(), 2u);
  EXPECT_EQ(handle->info().name, "x");
  expect_error([&] { registry.remove("x", {"a"}); }, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace refinery
