// Zero-shot classification and retrieval evaluation of the product against
// an independent float64 computation from the features the fixture's
// reference implementation stored: class folders and caption sets are drawn
// here from the fixture's images, with class names and captions whose
// prompts are texts of texts.json.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/embedding/embedder.h"
#include "core/eval/eval_suite.h"
#include "core/safetensors/safetensors.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using nlohmann::json;
using Vec = std::vector<double>;

struct Reference {
  std::vector<std::string> images;  // file names, in the order of image_features
  std::vector<Vec> image_features;
  std::vector<std::string> texts;
  std::vector<Vec> text_features;
};

std::vector<Vec> rows_of(const SafetensorsFile& f, const std::string& name) {
  const auto& t = f.at(name);
  const auto v = t.to_floats();
  const size_t d = static_cast<size_t>(t.shape.back());
  std::vector<Vec> rows;
  for (size_t i = 0; i < v.size(); i += d) rows.emplace_back(v.begin() + i, v.begin() + i + d);
  return rows;
}

Vec unit(Vec v) {
  double n = 0;
  for (double x : v) n += x * x;
  n = std::sqrt(n);
  for (double& x : v) x /= n;
  return v;
}

double inner(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

const Reference& reference() {
  static const Reference ref = [] {
    Reference r;
    const SafetensorsFile f = SafetensorsFile::open(testing::fixture("reference.safetensors"));
    r.images = json::parse(f.metadata().at("images")).get<std::vector<std::string>>();
    r.image_features = rows_of(f, "image_features");
    r.texts = json::parse(testing::read_file(testing::fixture("texts.json"))).get<std::vector<std::string>>();
    r.text_features = rows_of(f, "text_features");
    return r;
  }();
  return ref;
}

const Vec& text_feature(const std::string& text) {
  const auto& r = reference();
  auto it = std::find(r.texts.begin(), r.texts.end(), text);
  if (it == r.texts.end()) throw std::runtime_error("not in texts.json: " + text);
  return r.text_features[static_cast<size_t>(it - r.texts.begin())];
}

Embedder fixture_embedder() {
  return Embedder(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), torch::kCPU, EmbedderOptions{});
}

void copy_image(const std::string& name, const std::string& to) {
  testing::write_file(to, testing::read_file(testing::fixture("images/" + name)));
}

// Class folders: class c's folder is `folders[c]`; image i goes to class labels[i].
std::string make_class_folders(const testing::TempDir& dir, const std::vector<std::string>& folders,
                               const std::vector<int>& labels) {
  const std::string root = dir / "classes";
  ::mkdir(root.c_str(), 0755);
  for (const auto& f : folders) ::mkdir((root + "/" + f).c_str(), 0755);
  const auto& r = reference();
  for (size_t i = 0; i < labels.size(); ++i) copy_image(r.images[i], root + "/" + folders[labels[i]] + "/" + r.images[i]);
  return "folder:" + root;
}

// The expected zero-shot metrics: image i (reference row i) with label
// labels[i]; class weights = normalised mean of normalised prompt features.
struct Expected {
  double top1 = 0, top5 = 0, recall = 0;
};
Expected expected_zeroshot(const std::vector<int>& labels, const std::vector<std::vector<std::string>>& prompts) {
  std::vector<Vec> weights;
  for (const auto& class_prompts : prompts) {
    Vec mean(unit(text_feature(class_prompts[0])).size(), 0.0);
    for (const auto& p : class_prompts) {
      const Vec u = unit(text_feature(p));
      for (size_t k = 0; k < u.size(); ++k) mean[k] += u[k] / static_cast<double>(class_prompts.size());
    }
    weights.push_back(unit(mean));
  }
  const auto& r = reference();
  std::vector<int> hits(prompts.size(), 0), counts(prompts.size(), 0);
  Expected e;
  for (size_t i = 0; i < labels.size(); ++i) {
    const Vec x = unit(r.image_features[i]);
    const double own = inner(x, weights[labels[i]]);
    int better = 0;
    for (const auto& w : weights) better += inner(x, w) > own;
    e.top1 += better < 1;
    e.top5 += better < 5;
    counts[labels[i]]++;
    hits[labels[i]] += better < 1;
  }
  e.top1 /= labels.size();
  e.top5 /= labels.size();
  int classes = 0;
  for (size_t c = 0; c < prompts.size(); ++c) {
    if (counts[c] == 0) continue;
    e.recall += static_cast<double>(hits[c]) / counts[c];
    ++classes;
  }
  e.recall /= classes;
  return e;
}

// Seven classes whose "a photo of {}" prompts are texts of texts.json.
std::vector<std::string> photo_classes() {
  std::vector<std::string> names;
  for (const auto& t : reference().texts) {
    const std::string prefix = "a photo of ";
    if (t.rfind(prefix, 0) != 0) continue;
    const std::string name = t.substr(prefix.size());
    if (name.find('/') != std::string::npos || name.find('_') != std::string::npos) continue;
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    if (names.size() == 7) break;
  }
  return names;
}

std::vector<int> drawn_labels(int classes, unsigned seed) {
  std::vector<int> labels;
  for (int c = 0; c < 9; ++c) labels.push_back(c % classes);
  std::shuffle(labels.begin(), labels.end(), std::mt19937(seed));
  return labels;
}

EvalReport run_task(const json& task) {
  const PreparedEvalSuite suite = prepare_eval_suite(parse_eval_suite(json{{"name", "t"}, {"tasks", {task}}}));
  Embedder embedder = fixture_embedder();
  return run_eval_suite(suite, embedder);
}

TEST(ZeroShotEvaluation, SinglePromptMatchesTheReferenceFeatures) {
  const auto names = photo_classes();
  ASSERT_EQ(names.size(), 7u);
  for (unsigned seed : {1u, 2u, 3u}) {
    testing::TempDir dir;
    const auto labels = drawn_labels(7, seed);
    // Folder names spell spaces as underscores; the protocol turns them back.
    std::vector<std::string> folders;
    for (size_t c = 0; c < names.size(); ++c) {
      std::string f = names[c];
      std::replace(f.begin(), f.end(), ' ', '_');
      folders.push_back(std::to_string(c) + "_" + f);  // sorted as the classes are
    }
    const std::string spec = make_class_folders(dir, folders, labels);
    // Folder c is named "<c>_<name>": the names come from a names file.
    json names_json = json::object();
    for (size_t c = 0; c < names.size(); ++c) names_json[folders[c]] = names[c];
    testing::write_file(dir / "names.json", names_json.dump());
    const EvalReport report = run_task({{"kind", "zeroshot"}, {"data", spec}, {"classnames", dir / "names.json"}});
    std::vector<std::vector<std::string>> prompts;
    for (const auto& n : names) prompts.push_back({"a photo of " + n});
    const Expected e = expected_zeroshot(labels, prompts);
    ASSERT_EQ(report.tasks.size(), 1u);
    const auto& m = report.tasks[0].metrics;
    EXPECT_EQ(report.tasks[0].n, 9);
    EXPECT_DOUBLE_EQ(m.at("top1"), e.top1) << "seed " << seed;
    EXPECT_DOUBLE_EQ(m.at("top5"), e.top5) << "seed " << seed;
    EXPECT_DOUBLE_EQ(m.at("mean_per_class_recall"), e.recall) << "seed " << seed;
    EXPECT_EQ(report.tasks[0].details["classes"], 7);
    EXPECT_EQ(report.summary.at("mean_zeroshot_top1"), m.at("top1"));
  }
}

TEST(ZeroShotEvaluation, TemplateEnsembleAveragesNormalisedPrompts) {
  // "horse." and "ship." are the classes with both prompts in texts.json.
  testing::TempDir dir;
  const std::vector<int> labels = {0, 1, 0, 1, 1, 0, 0, 1, 0};
  const std::string spec = make_class_folders(dir, {"horse.", "ship."}, labels);
  const json templates = {"a photo of a {}", "a photo of the {}"};
  const EvalReport report = run_task({{"kind", "zeroshot"}, {"data", spec}, {"templates", templates}});
  const Expected e = expected_zeroshot(
      labels, {{"a photo of a horse.", "a photo of the horse."}, {"a photo of a ship.", "a photo of the ship."}});
  EXPECT_DOUBLE_EQ(report.tasks[0].metrics.at("top1"), e.top1);
  EXPECT_DOUBLE_EQ(report.tasks[0].metrics.at("mean_per_class_recall"), e.recall);
  EXPECT_EQ(report.tasks[0].details["protocol"], "template ensemble");
  // The single-prompt classifier is a different one: its scores differ.
  Embedder embedder = fixture_embedder();
  const at::Tensor ensemble = build_zeroshot_classifier(embedder, {"horse.", "ship."}, templates);
  const at::Tensor single = build_zeroshot_classifier(embedder, {"horse.", "ship."}, {"a photo of a {}"});
  const Vec expected_row = [] {
    Vec a = unit(text_feature("a photo of a horse.")), b = unit(text_feature("a photo of the horse."));
    for (size_t k = 0; k < a.size(); ++k) a[k] = (a[k] + b[k]) / 2;
    return unit(a);
  }();
  for (size_t k = 0; k < expected_row.size(); ++k) {
    EXPECT_NEAR(ensemble[0][static_cast<int64_t>(k)].item<double>(), expected_row[k], 1e-4);
  }
  EXPECT_GT((ensemble - single).abs().max().item<double>(), 1e-3);
}

TEST(ZeroShotEvaluation, ClassSubsetPicksNamesByIdOrName) {
  testing::TempDir dir;
  const auto names = photo_classes();
  // A csv set with integer labels 0..2 over a 7-name list; the subset maps
  // the data's classes to names 4, 0 and 2 of the list.
  testing::write_file(dir / "names.json", json(names).dump());
  std::string csv = "filepath,label\n";
  const auto& r = reference();
  for (size_t i = 0; i < 9; ++i) {
    copy_image(r.images[i], dir / r.images[i]);
    csv += r.images[i] + "," + std::to_string(i % 3) + "\n";
  }
  testing::write_file(dir / "set.csv", csv);
  const EvalReport report = run_task({{"kind", "zeroshot"},
                                      {"data", "csv:" + (dir / "set.csv")},
                                      {"classnames", dir / "names.json"},
                                      {"classes", {"4", names[0], 2}}});
  std::vector<int> labels;
  for (int i = 0; i < 9; ++i) labels.push_back(i % 3);
  const Expected e = expected_zeroshot(
      labels, {{"a photo of " + names[4]}, {"a photo of " + names[0]}, {"a photo of " + names[2]}});
  EXPECT_DOUBLE_EQ(report.tasks[0].metrics.at("top1"), e.top1);
  EXPECT_EQ(report.tasks[0].details["per_class"][0]["name"], names[4]);
  EXPECT_EQ(report.tasks[0].details["classes"], 3);
}

TEST(RetrievalEvaluation, RecallAndGapMatchTheReferenceFeatures) {
  testing::TempDir dir;
  const auto& r = reference();
  std::mt19937 rng(11);
  // Every image gets 1-3 distinct captions drawn from texts.json (skipping
  // empty texts, which a caption set refuses).
  std::vector<size_t> pool;
  for (size_t t = 0; t < r.texts.size(); ++t) {
    const std::string& s = r.texts[t];
    if (s.find_first_not_of(" \t\r\n") != std::string::npos && s.size() < 200 && s == s.substr(s.find_first_not_of(" \t\r\n"))) {
      pool.push_back(t);
    }
  }
  std::shuffle(pool.begin(), pool.end(), rng);
  std::string jsonl;
  std::vector<size_t> text_rows;
  std::vector<int> owner;
  size_t next = 0;
  for (size_t i = 0; i < 9; ++i) {
    const int captions = 1 + static_cast<int>(rng() % 3);
    for (int c = 0; c < captions; ++c) {
      const size_t t = pool[next++];
      jsonl += json{{"image", testing::fixture("images/" + r.images[i])}, {"caption", r.texts[t]}}.dump() + "\n";
      text_rows.push_back(t);
      owner.push_back(static_cast<int>(i));
    }
  }
  testing::write_file(dir / "set.jsonl", jsonl);
  const EvalReport report = run_task({{"kind", "retrieval"}, {"data", "jsonl:" + (dir / "set.jsonl")}});
  const auto& m = report.tasks[0].metrics;

  std::vector<Vec> x, y;
  for (size_t i = 0; i < 9; ++i) x.push_back(unit(r.image_features[i]));
  for (size_t t : text_rows) y.push_back(unit(r.text_features[t]));
  for (int k : {1, 5, 10}) {
    double t2i = 0, i2t = 0;
    for (size_t j = 0; j < y.size(); ++j) {
      const double own = inner(y[j], x[owner[j]]);
      int better = 0;
      for (const auto& xi : x) better += inner(y[j], xi) > own;
      t2i += better < k;
    }
    for (size_t i = 0; i < x.size(); ++i) {
      double best = -2;
      for (size_t j = 0; j < y.size(); ++j) {
        if (owner[j] == static_cast<int>(i)) best = std::max(best, inner(x[i], y[j]));
      }
      int better = 0;
      for (const auto& yj : y) better += inner(x[i], yj) > best;
      i2t += better < k;
    }
    EXPECT_DOUBLE_EQ(m.at("text_to_image_r" + std::to_string(k)), t2i / y.size()) << "k=" << k;
    EXPECT_DOUBLE_EQ(m.at("image_to_text_r" + std::to_string(k)), i2t / x.size()) << "k=" << k;
  }
  Vec gap(x[0].size(), 0.0);
  for (const auto& xi : x)
    for (size_t k = 0; k < gap.size(); ++k) gap[k] += xi[k] / x.size();
  for (const auto& yj : y)
    for (size_t k = 0; k < gap.size(); ++k) gap[k] -= yj[k] / y.size();
  EXPECT_NEAR(m.at("modality_gap_l2"), std::sqrt(inner(gap, gap)), 1e-4);
  EXPECT_NEAR(m.at("modality_gap"), inner(gap, gap) / gap.size(), 1e-5);
  EXPECT_EQ(report.tasks[0].n, 9);
  EXPECT_EQ(report.tasks[0].details["captions"], static_cast<int>(y.size()));
}

TEST(EvalSuite, RunsEveryTaskIntoOneReportAndReusesClassifiers) {
  testing::TempDir dir;
  const std::string spec = make_class_folders(dir, {"horse.", "ship."}, {0, 1, 0, 1, 1, 0, 0, 1, 0});
  const json suite = {{"name", "mine"},
                      {"tasks",
                       {{{"name", "a"}, {"kind", "zeroshot"}, {"data", spec}, {"prompt", "a photo of a {}"}},
                        {{"name", "b"}, {"kind", "zeroshot"}, {"data", spec}, {"prompt", "a photo of a {}"}},
                        {{"name", "c"}, {"kind", "zeroshot"}, {"data", spec}, {"prompt", "a photo of the {}"}}}}};
  testing::write_file(dir / "suite.json", suite.dump());
  const PreparedEvalSuite prepared = prepare_eval_suite(load_eval_suite_file(dir / "suite.json"));
  Embedder embedder = fixture_embedder();
  std::vector<std::string> seen;
  int64_t last_done = 0;
  EvalCallbacks cb;
  cb.on_task = [&](const EvalTaskReport& t) { seen.push_back(t.name); };
  cb.on_progress = [&](const EvalProgress& p) {
    EXPECT_GE(p.done, last_done);
    EXPECT_LE(p.done, p.total);
    last_done = p.done;
  };
  const EvalReport report = run_eval_suite(prepared, embedder, cb);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(last_done, prepared.total_items());
  EXPECT_FALSE(report.tasks[0].details["classifier_cached"].get<bool>());
  EXPECT_TRUE(report.tasks[1].details["classifier_cached"].get<bool>());
  EXPECT_FALSE(report.tasks[2].details["classifier_cached"].get<bool>());
  double mean = 0;
  for (const auto& t : report.tasks) mean += t.metrics.at("top1") / 3;
  EXPECT_NEAR(report.summary.at("mean_zeroshot_top1"), mean, 1e-12);
  const json j = eval_report_to_json(report);
  EXPECT_EQ(j["tasks"].size(), 3u);
  EXPECT_EQ(j["suite"], "mine");

  // Cancelling stops the run with CANCELLED.
  cb.should_stop = [] { return true; };
  try {
    run_eval_suite(prepared, embedder, cb);
    FAIL() << "expected CANCELLED";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
}

TEST(EvalSuite, TheClassifierCacheKeepsTheMostRecentlyUsed) {
  Embedder embedder = fixture_embedder();
  ZeroShotClassifierCache cache(2);
  const std::vector<std::string> prompt = {"a photo of a {}"};
  auto build = [&](const std::string& model, const std::vector<std::string>& names) {
    bool built = false;
    cache.get_or_build(model, embedder, names, prompt, {}, &built);
    return built;
  };
  EXPECT_TRUE(build("m1", {"cat", "dog"}));
  EXPECT_TRUE(build("m1", {"ship", "horse"}));
  EXPECT_FALSE(build("m1", {"cat", "dog"}));  // used again: now the most recent
  EXPECT_TRUE(build("m2", {"cat", "dog"}));   // another model's weights: built, evicts ship/horse
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(build("m1", {"cat", "dog"}));
  EXPECT_TRUE(build("m1", {"ship", "horse"}));
}

// The message of what `prepare` throws, which must name `item`.
void expect_rejected(const json& task, const std::string& item) {
  try {
    prepare_eval_suite(parse_eval_suite(json{{"tasks", {task}}}));
    FAIL() << "accepted: " << task.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(item), std::string::npos) << e.what();
  }
}

TEST(EvalSuite, BadSpecsAreRejectedBeforeAnyWorkNamingTheItem) {
  testing::TempDir dir;
  const std::string spec = make_class_folders(dir, {"horse.", "ship."}, {0, 1, 0, 1, 1, 0, 0, 1, 0});
  expect_rejected({{"name", "x"}, {"kind", "zeroshot"}, {"data", "folder:" + (dir / "nope")}}, dir / "nope");
  ::mkdir((dir / "classes/zebra").c_str(), 0755);
  expect_rejected({{"kind", "zeroshot"}, {"data", spec}}, "'zebra'");
  ::rmdir((dir / "classes/zebra").c_str());
  expect_rejected({{"kind", "zeroshot"}, {"data", spec}, {"dataset", "ImageNot"}}, "ImageNot");
  expect_rejected({{"kind", "zeroshot"}, {"data", spec}, {"dataset", "CIFAR10"}}, "10 names");
  expect_rejected({{"kind", "zeroshot"}, {"data", spec}, {"prompt", "a photo"}}, "a photo");
  expect_rejected({{"kind", "zeroshot"}, {"data", spec}, {"prompts", "x"}}, "'prompts'");
  expect_rejected({{"kind", "retrieval"}, {"data", spec}, {"dataset", "CIFAR10"}}, "'dataset'");
  expect_rejected({{"kind", "ranking"}, {"data", spec}}, "ranking");
  testing::write_file(dir / "classes/ship./broken.jpg", "not an image at all");
  expect_rejected({{"kind", "zeroshot"}, {"data", spec}}, "broken.jpg");
  const std::string jsonl = json{{"image", dir / "classes/ship./broken.jpg"}, {"caption", "a"}}.dump() + "\n";
  testing::write_file(dir / "r.jsonl", jsonl);
  expect_rejected({{"kind", "retrieval"}, {"data", "jsonl:" + (dir / "r.jsonl")}}, "broken.jpg");
}

}  // namespace
}  // namespace refinery
