#include "server/models/model_registry.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include "core/base/error.h"
#include "core/runtime/inference_precision.h"
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

// Whether this machine's CPU can serve `precision` (bf16: native bf16; int8:
// VNNI and a quantized engine); the precision tests check the refusal
// instead where it cannot.
bool runs_here(InferencePrecision precision) {
  try {
    check_inference_precision(precision, c10::Device(c10::DeviceType::CPU));
    return true;
  } catch (const Error&) {
    return false;
  }
}

TEST(ModelRegistry, EachModelServesInItsOwnPrecision) {
  if (!runs_here(InferencePrecision::kInt8)) GTEST_SKIP() << "this CPU cannot run int8";
  TempDir dir;
  copy_fixture(dir, "plain.safetensors");
  copy_fixture(dir, "fast.safetensors");
  const std::string extra = dir / "elsewhere.safetensors";
  testing::write_file(extra, testing::read_file(testing::fixture("tiny.safetensors")));
  {
    ModelRegistry r(options(dir));
    EXPECT_EQ(r.import(extra, "copy", "", false).precision, "fp32");  // the server's default
    EXPECT_EQ(r.import(extra, "pinned", "", false, {}, "fp32").precision, "fp32");
  }
  auto o = options(dir);
  o.model_precision = {{"fast", "int8"}, {"copy@1", "int8"}, {"pinned", "int8"}};
  {
    ModelRegistry r(o);
    EXPECT_EQ(r.resolve("plain").precision, "fp32");   // no rule
    EXPECT_EQ(r.resolve("fast").precision, "int8");    // by name
    EXPECT_EQ(r.resolve("copy").precision, "int8");    // by name@version
    EXPECT_EQ(r.resolve("pinned").precision, "fp32");  // an import's own precision beats every rule
    auto fp32 = r.acquire("plain");
    auto int8 = r.acquire("fast");
    EXPECT_FALSE(fp32->model->quantized_int8());
    EXPECT_TRUE(int8->model->quantized_int8());
    // The packed int8 layers are counted against the memory budget.
    EXPECT_GT(int8->memory_bytes, fp32->memory_bytes);
    torch::InferenceMode guard;
    // <|startoftext|> [a] <|endoftext|>, padded with zeros.
    auto tokens = torch::zeros({2, 77}, torch::kInt);
    tokens.index_put_({torch::indexing::Slice(), 0}, 49406);
    tokens.index_put_({torch::indexing::Slice(), 3}, 49407);
    tokens.index_put_({1, 1}, 320);
    const auto a = fp32->model->encode_text(tokens), b = int8->model->encode_text(tokens);
    EXPECT_GT((a - b).abs().max().item<double>(), 1e-5) << "served fast in fp32";
    EXPECT_GT(torch::cosine_similarity(a, b, 1).min().item<double>(), 0.99);
  }
  // Restarted without the rules, then with int8 for all: the import's own
  // choice stays.
  ModelRegistry again(options(dir));
  EXPECT_EQ(again.resolve("fast").precision, "fp32");
  EXPECT_EQ(again.resolve("copy").precision, "fp32");
  auto o2 = options(dir);
  o2.precision = "int8";
  ModelRegistry all_int8(o2);
  EXPECT_EQ(all_int8.resolve("pinned").precision, "fp32");
  EXPECT_EQ(all_int8.resolve("copy").precision, "int8");
  EXPECT_EQ(all_int8.resolve("plain").precision, "int8");
}

TEST(ModelRegistry, ARuleForOneVersionDoesNotReachTheNextImport) {
  TempDir dir;
  copy_fixture(dir, "plain.safetensors");
  auto o = options(dir);
  o.model_precision = {{"plain@1", "bf16"}};
  if (!runs_here(InferencePrecision::kBf16)) GTEST_SKIP() << "this CPU has no native bf16";
  ModelRegistry r(o);
  EXPECT_EQ(r.resolve("plain@1").precision, "bf16");
  const auto e = r.import(testing::fixture("tiny.safetensors"), "plain", "", false);
  EXPECT_EQ(e.ref(), "plain@2");
  EXPECT_EQ(e.precision, "fp32");
  EXPECT_EQ(r.resolve("plain@2").precision, "fp32");
}

// One bf16 copy per pass side by side: autocast's cache is per thread.
TEST(ModelRegistry, Bf16ModelsCountTheirBf16WeightCopies) {
  if (!runs_here(InferencePrecision::kBf16)) GTEST_SKIP() << "this CPU has no native bf16";
  for (const int copies : {1, 2}) {
    SCOPED_TRACE("bf16_weight_copies " + std::to_string(copies));
    TempDir dir;
    copy_fixture(dir, "tiny.safetensors");
    copy_fixture(dir, "half.safetensors");
    auto o = options(dir);
    o.model_precision = {{"half", "bf16"}};
    o.bf16_weight_copies = copies;
    ModelRegistry r(o);
    const auto fp32 = r.acquire("tiny"), bf16 = r.acquire("half");
    // + 2 bytes per parameter and copy; fp32 holds none.
    EXPECT_EQ(bf16->memory_bytes, fp32->memory_bytes + copies * (fp32->memory_bytes / 2));
    EXPECT_FALSE(bf16->model->quantized_int8());
  }
}

TEST(ModelRegistry, PrecisionRulesNamingNoModelOrAnUnknownPrecisionAreRefused) {
  TempDir dir;
  copy_fixture(dir, "tiny.safetensors");
  auto o = options(dir);
  o.model_precision = {{"tiny", "fp32"}, {"tinny", "fp32"}};
  const std::string typo = error_of([&] { ModelRegistry r(o); });
  EXPECT_NE(typo.find("--model-precision tinny=fp32"), std::string::npos) << typo;
  EXPECT_NE(typo.find("registered: tiny"), std::string::npos) << typo;
  o.model_precision = {{"tiny@2", "fp32"}};
  EXPECT_NE(error_of([&] { ModelRegistry r(o); }).find("'tiny@2'"), std::string::npos);
  o.model_precision = {{"tiny", "fp16"}};
  EXPECT_NE(error_of([&] { ModelRegistry r(o); }).find("'fp16'"), std::string::npos);
  o.model_precision.clear();
  ModelRegistry r(o);
  const std::string bad = error_of([&] { r.import(testing::fixture("tiny.safetensors"), "x", "", false, {}, "int4"); });
  EXPECT_NE(bad.find("import precision"), std::string::npos) << bad;
  EXPECT_NE(bad.find("'int4'"), std::string::npos) << bad;
  if (!runs_here(InferencePrecision::kInt8)) {
    EXPECT_NE(error_of([&] { r.import(testing::fixture("tiny.safetensors"), "x", "", false, {}, "int8"); }),
              "(no error)");
  }
  EXPECT_EQ(r.list().size(), 1u);  // nothing half-registered
}

}  // namespace
}  // namespace refinery
