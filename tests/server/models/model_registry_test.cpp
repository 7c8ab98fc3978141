#include "server/models/model_registry.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include "core/base/error.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::TempDir;

std::string copy_fixture(const TempDir& dir, const std::string& name) {
  ::mkdir((dir / "models").c_str(), 0755);
  const std::string path = dir / ("models/" + name);
  testing::write_file(path, testing::read_file(testing::fixture("tiny.safetensors")));
  return path;
}

ModelRegistryOptions options(const TempDir& dir) {
  ModelRegistryOptions o;
  o.models_dir = dir / "models";
  o.data_dir = dir / "data";
  return o;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ModelRegistry, RegistersEveryCheckpointInTheModelsDirByName) {
  TempDir dir;
  copy_fixture(dir, "tiny.safetensors");
  copy_fixture(dir, "other.safetensors");
  ModelRegistry r(options(dir));
  const auto all = r.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(r.resolve("tiny").ref(), "tiny@1");
  EXPECT_EQ(r.resolve("tiny@1").config.embed_dim, 32);
  EXPECT_EQ(r.resolve("").ref(), r.default_ref());
  EXPECT_FALSE(r.is_loaded("tiny"));  // lazy
}

TEST(ModelRegistry, ParameterCountMatchesTheBuiltModel) {
  TempDir dir;
  copy_fixture(dir, "tiny.safetensors");
  ModelRegistry r(options(dir));
  auto loaded = r.acquire("tiny");
  int64_t actual = 0;
  for (const auto& p : loaded->model->parameters()) actual += p.numel();
  EXPECT_EQ(r.resolve("tiny").parameters, actual);
  EXPECT_EQ(loaded->memory_bytes, actual * 4);
}

TEST(ModelRegistry, UnknownAndMalformedReferencesAreNamed) {
  TempDir dir;
  copy_fixture(dir, "tiny.safetensors");
  ModelRegistry r(options(dir));
  EXPECT_NE(error_of([&] { r.resolve("nope"); }).find("unknown model 'nope' (known: tiny)"), std::string::npos);
  EXPECT_NE(error_of([&] { r.resolve("tiny@7"); }).find("no version 7"), std::string::npos);
  EXPECT_NE(error_of([&] { r.resolve("tiny@x"); }).find("malformed model reference 'tiny@x'"), std::string::npos);
}

TEST(ModelRegistry, ImportAddsVersionsThatSurviveARestart) {
  TempDir dir;
  copy_fixture(dir, "tiny.safetensors");
  const std::string extra = dir / "elsewhere.safetensors";
  testing::write_file(extra, testing::read_file(testing::fixture("tiny.safetensors")));
  {
    ModelRegistry r(options(dir));
    Lineage l;
    l.base_model = "tiny@1";
    l.method = "clip-refine";
    l.metrics["gap"] = 0.5;
    const auto e = r.import(extra, "tiny", "", /*make_default=*/true, l);
    EXPECT_EQ(e.ref(), "tiny@2");
    EXPECT_EQ(r.resolve("tiny").ref(), "tiny@2");  // a bare name is the latest version
    EXPECT_EQ(r.default_ref(), "tiny@2");
  }
  ModelRegistry again(options(dir));
  const auto e = again.resolve("tiny@2");
  EXPECT_EQ(e.path, extra);
  EXPECT_EQ(e.lineage.base_model, "tiny@1");
  EXPECT_EQ(e.lineage.metrics.at("gap"), 0.5);
  EXPECT_EQ(again.default_ref(), "tiny@2");
}

TEST(ModelRegistry, ImportRejectsBadFilesAndNames) {
  TempDir dir;
  ::mkdir((dir / "models").c_str(), 0755);
  ModelRegistry r(options(dir));
  testing::write_file(dir / "junk.safetensors", "not a checkpoint at all");
  EXPECT_NE(error_of([&] { r.import(dir / "junk.safetensors", "", "", false); }).find(dir / "junk.safetensors"),
            std::string::npos);
  EXPECT_NE(error_of([&] { r.import(testing::fixture("tiny.safetensors"), "bad name!", "", false); }).find("bad name!"),
            std::string::npos);
  EXPECT_TRUE(r.list().empty());
}

TEST(ModelRegistry, DeletedModelsDirEntryStaysDeletedAfterRestart) {
  TempDir dir;
  copy_fixture(dir, "tiny.safetensors");
  copy_fixture(dir, "keep.safetensors");
  {
    ModelRegistry r(options(dir));
    r.remove("tiny@1");
    EXPECT_EQ(r.list().size(), 1u);
  }
  ModelRegistry again(options(dir));
  EXPECT_EQ(again.list().size(), 1u);
  EXPECT_EQ(again.list()[0].name, "keep");
}

TEST(ModelRegistry, LeastRecentlyUsedModelIsUnloadedOverBudget) {
  TempDir dir;
  copy_fixture(dir, "a.safetensors");
  copy_fixture(dir, "b.safetensors");
  auto o = options(dir);
  o.memory_budget_bytes = 20 << 20;  // one tiny model is ~13 MB
  ModelRegistry r(o);
  auto a = r.acquire("a");
  EXPECT_TRUE(r.is_loaded("a"));
  auto b = r.acquire("b");
  EXPECT_TRUE(r.is_loaded("b"));
  EXPECT_FALSE(r.is_loaded("a"));
  // The caller still holding `a` can keep using it.
  torch::InferenceMode guard;
  EXPECT_EQ(a->model->encode_text(torch::full({1, 77}, 49407, torch::kInt)).size(1), 32);
  r.acquire("a");  // reloads, and now b goes
  EXPECT_TRUE(r.is_loaded("a"));
  EXPECT_FALSE(r.is_loaded("b"));
}

TEST(ModelRegistry, ABrokenFileInTheModelsDirIsSkippedNotFatal) {
  TempDir dir;
  copy_fixture(dir, "tiny.safetensors");
  testing::write_file(dir / "models/broken.safetensors", "garbage");
  ModelRegistry r(options(dir));
  ASSERT_EQ(r.list().size(), 1u);
  EXPECT_EQ(r.list()[0].name, "tiny");
}

}  // namespace
}  // namespace refinery
