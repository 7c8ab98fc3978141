// Evaluation inside jobs: a suite (core/eval/eval_suite.h) sent as JSON in
// a JobSpec, checked at submit, run on a registered model's weights on the
// jobs' device, with its progress throttled for the event log and its report
// as refinery.v1.EvalReport. Zero-shot classifiers are cached across jobs per
// (weights, class names, prompts).
#pragma once

#include <functional>
#include <string>

#include "core/eval/eval_suite.h"
#include "refinery/v1/eval.pb.h"

namespace refinery {

struct ModelEntry;

// Parses and prepares the suite of a JobSpec, checking every file: errors
// are INVALID_ARGUMENT / NOT_FOUND / PERMISSION_DENIED (a path outside
// `roots`) beginning "eval_suite: " and naming the task and the item.
PreparedEvalSuite prepare_job_eval_suite(const std::string& suite_json, const PathRoots* roots = nullptr);
// The suite in canonical form (every key spelled out), as jobs store it.
std::string canonical_eval_suite(const std::string& suite_json);
// FNV-1a (16 hex digits) of the canonical form: EvalReport.suite_digest.
std::string eval_suite_digest(const std::string& suite_json);
std::string eval_suite_name(const std::string& suite_json);

v1::EvalReport eval_report_to_proto(const EvalReport& report, const std::string& model_ref, const std::string& job_id);
v1::EvalTaskResult eval_task_to_proto(const EvalTaskReport& task);

struct ModelEvaluationCallbacks {
  // After a batch, at most every `progress_interval_s`, and after the last.
  std::function<void(const v1::EvalProgressEvent&)> on_progress;
  std::function<void(const v1::EvalTaskResult&)> on_task;
  std::function<bool()> should_stop;  // true: Error(kCancelled) soon after
};

struct ModelEvaluatorOptions {
  std::string device = "cpu";
  int batch_size = 64;
  int decode_workers = 0;  // 0: all cores
  double progress_interval_s = 1.0;
  size_t cached_classifiers = 32;
};

class ModelEvaluator {
 public:
  explicit ModelEvaluator(ModelEvaluatorOptions options = {});

  // Loads the model's weights (a copy of its own, not the serving one) and
  // runs the suite. `phase` is "eval", "base" or "result".
  v1::EvalReport evaluate(const ModelEntry& model, const PreparedEvalSuite& suite, const std::string& phase,
                          const std::string& job_id, const ModelEvaluationCallbacks& callbacks);

 private:
  ModelEvaluatorOptions options_;
  ZeroShotClassifierCache cache_;
};

}  // namespace refinery
