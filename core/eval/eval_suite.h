// Evaluation suites: several zero-shot and retrieval tasks evaluated in one
// pass into one report, offline (`refinery-model eval`) and on the server
// (evaluation jobs). A suite is JSON:
//
//   {"name": "paper-12",
//    "tasks": [
//      {"name": "pets", "kind": "zeroshot", "data": "folder:/data/pets",
//       "dataset": "OxfordPets",           // names (by class id) from zeroshot_prompts.json
//       "classnames": "FILE",              // or: a names file (zeroshot_classifier.h)
//       "classes": ["0", "3", "goldfish"], // optional subset, ids or names
//       "prompt": "a photo of {}",         // the default: the paper's single prompt
//       "templates": "ImageNet"},          // or an ensemble: FILE, data set name, or [...]
//      {"name": "coco-5k", "kind": "retrieval", "data": "coco:ANN.json:IMAGES"}]}
//
// Data specs: zeroshot takes folder:DIR and csv:FILE (class_dataset.h),
// retrieval every caption spec (caption_dataset.h), with all captions.
// Paths are taken as given (relative ones against the working directory).
//
// The report, as JSON (the contract of `refinery-model eval --json`):
//   {"suite": NAME, "tasks": [{"name", "kind", "data", "n", "metrics": {...},
//     "seconds", "images_per_second", "details": {...}}], "summary": {...}}
// zeroshot metrics: top1, top5, mean_per_class_recall; details: protocol,
// classes, per_class [{name, images, accuracy}], confusions.
// retrieval metrics: text_to_image_r1/r5/r10, image_to_text_r1/r5/r10,
// modality_gap, modality_gap_l2, alignment, uniformity; n = images.
// summary: mean_zeroshot_top1/top5 over the zeroshot tasks,
// mean_text_to_image_r1 / mean_image_to_text_r1 over the retrieval tasks,
// and the task counts. Accuracies are fractions in [0, 1].
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/data/caption_dataset.h"
#include "core/data/class_dataset.h"
#include "core/embedding/embedder.h"
#include "core/eval/zeroshot_classifier.h"

namespace refinery {

enum class EvalKind { kZeroShot, kRetrieval };
const char* eval_kind_name(EvalKind kind);  // "zeroshot", "retrieval"
EvalKind parse_eval_kind(const std::string& name);

struct EvalTaskSpec {
  std::string name;
  EvalKind kind = EvalKind::kZeroShot;
  std::string data;
  // zeroshot only:
  ClassNameOptions names;
  std::string prompt;                   // one template; empty = kDefaultPromptTemplate
  std::string templates;                // FILE or a data set name: an ensemble (wins over prompt)
  std::vector<std::string> template_list;  // an inline ensemble (wins over both)
};

struct EvalSuiteSpec {
  std::string name = "default";
  std::vector<EvalTaskSpec> tasks;
};

// INVALID_ARGUMENT naming the task (by name or index) and the key: unknown
// keys, a missing kind or data, an unknown kind, duplicate task names,
// zeroshot keys on a retrieval task, no tasks.
EvalSuiteSpec parse_eval_suite(const nlohmann::json& j, const std::string& what = "suite");
EvalSuiteSpec load_eval_suite_file(const std::string& path);
nlohmann::json eval_suite_to_json(const EvalSuiteSpec& suite);

// A task whose data is loaded and whose names and prompts are resolved.
struct PreparedEvalTask {
  EvalTaskSpec spec;
  ClassDataset classes;                  // zeroshot
  std::vector<std::string> class_names;  // zeroshot, by class id
  std::vector<std::string> templates;    // zeroshot
  CaptionDataset captions;               // retrieval
  int64_t images() const;
  int64_t texts() const;  // captions, or prompts (classes x templates)
};

struct PreparedEvalSuite {
  std::string name;
  std::vector<PreparedEvalTask> tasks;
  int64_t total_items() const;  // images + texts over all tasks: the progress total
};

struct EvalPrepareOptions {
  bool check_images = true;  // every image file there, readable, an image (header only)
  // Data sets, their images, names and templates files must lie inside
  // these (a server's --data-root); null: anywhere.
  const PathRoots* roots = nullptr;
};

// Loads and checks everything a run needs, so bad input fails before any
// work: INVALID_ARGUMENT / NOT_FOUND prefixed with "task 'NAME': " and
// naming the item (missing folder, empty class, unknown data set name,
// unreadable image, bad names file or template).
PreparedEvalSuite prepare_eval_suite(const EvalSuiteSpec& suite, const EvalPrepareOptions& options = {});

struct EvalTaskReport {
  std::string name;
  EvalKind kind = EvalKind::kZeroShot;
  std::string data;
  int64_t n = 0;  // images
  std::map<std::string, double> metrics;
  double seconds = 0;            // the whole task
  double images_per_second = 0;  // image embedding (decode + model) alone
  nlohmann::json details = nlohmann::json::object();
};

struct EvalReport {
  std::string suite;
  std::vector<EvalTaskReport> tasks;
  std::map<std::string, double> summary;
};

struct EvalProgress {
  size_t task = 0;          // index into the suite's tasks
  std::string task_name;
  std::string phase;        // "texts" or "images"
  int64_t done = 0;         // items (images + texts) finished over the whole suite
  int64_t total = 0;
};

struct EvalCallbacks {
  std::function<void(const EvalProgress&)> on_progress;  // after every batch
  std::function<void(const EvalTaskReport&)> on_task;    // after every task
  std::function<bool()> should_stop;                     // checked after every batch
};

struct EvalRunOptions {
  std::string model_key;                       // names the weights for the classifier cache
  ZeroShotClassifierCache* cache = nullptr;    // shared across runs; null: one for this run
};

// Runs every task with `embedder` (which should normalise nothing; scores
// normalise themselves). Stops with Error(kCancelled) when should_stop()
// says so; an image that fails to decode fails the run, naming the file.
EvalReport run_eval_suite(const PreparedEvalSuite& suite, Embedder& embedder, const EvalCallbacks& callbacks = {},
                          const EvalRunOptions& options = {});

nlohmann::json eval_report_to_json(const EvalReport& report);

// The retrieval metrics under their report names (text_to_image_r1, ...)
// from alignment_metrics.h.
std::map<std::string, double> retrieval_metrics(const at::Tensor& image_features, const at::Tensor& text_features,
                                                const std::vector<int64_t>& text_image);

}  // namespace refinery
