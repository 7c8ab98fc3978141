#include "server/jobs/model_evaluation.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/base/clock.h"
#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/runtime/torch_runtime.h"
#include "server/models/model_registry.h"

namespace refinery {
namespace {

using Clock = std::chrono::steady_clock;

EvalSuiteSpec parse_job_suite(const std::string& suite_json) {
  if (suite_json.empty()) throw invalid_argument("eval_suite is empty: send a suite as JSON ({\"name\", \"tasks\": [...]})");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(suite_json);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(std::string("eval_suite: not valid JSON: ") + without_quoted_input(e.what()));
  }
  return parse_eval_suite(j, "eval_suite");
}

// The model's key in the classifier cache: a re-registered name@version
// with other weights must not hit the old classifiers.
std::string weights_key(const ModelEntry& m) {
  return m.ref() + "|" + m.path + "|" + std::to_string(m.created_unix_ms);
}

}  // namespace

PreparedEvalSuite prepare_job_eval_suite(const std::string& suite_json, const PathRoots* roots) {
  const EvalSuiteSpec spec = parse_job_suite(suite_json);
  EvalPrepareOptions options;
  options.roots = roots;
  try {
    return prepare_eval_suite(spec, options);
  } catch (const Error& e) {
    throw Error(e.code(), "eval_suite: " + std::string(e.what()));
  }
}

std::string canonical_eval_suite(const std::string& suite_json) {
  return eval_suite_to_json(parse_job_suite(suite_json)).dump();
}

std::string eval_suite_digest(const std::string& suite_json) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : canonical_eval_suite(suite_json)) h = (h ^ c) * 1099511628211ULL;
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string eval_suite_name(const std::string& suite_json) { return parse_job_suite(suite_json).name; }

v1::EvalTaskResult eval_task_to_proto(const EvalTaskReport& t) {
  v1::EvalTaskResult out;
  out.set_name(t.name);
  out.set_kind(eval_kind_name(t.kind));
  out.set_data(t.data);
  out.set_n(t.n);
  for (const auto& [k, v] : t.metrics) (*out.mutable_metrics())[k] = v;
  out.set_seconds(t.seconds);
  out.set_images_per_second(t.images_per_second);
  out.set_details_json(t.details.dump());
  return out;
}

v1::EvalReport eval_report_to_proto(const EvalReport& report, const std::string& model_ref, const std::string& job_id) {
  v1::EvalReport out;
  out.set_suite(report.suite);
  out.set_model(model_ref);
  out.set_job_id(job_id);
  out.set_finished_unix_ms(now_ms());
  for (const auto& t : report.tasks) *out.add_tasks() = eval_task_to_proto(t);
  for (const auto& [k, v] : report.summary) (*out.mutable_summary())[k] = v;
  return out;
}

ModelEvaluator::ModelEvaluator(ModelEvaluatorOptions options)
    : options_(std::move(options)), cache_(options_.cached_classifiers) {}

v1::EvalReport ModelEvaluator::evaluate(const ModelEntry& model, const PreparedEvalSuite& suite,
                                        const std::string& phase, const std::string& job_id,
                                        const ModelEvaluationCallbacks& callbacks) {
  CheckpointReadOptions read_options;
  read_options.model_config_path = model.model_config_path;
  EmbedderOptions embed_options;
  embed_options.batch_size = options_.batch_size;
  embed_options.decode_workers = options_.decode_workers;
  Embedder embedder(CheckpointReader::load_model(model.path, read_options), resolve_device(options_.device),
                    embed_options);

  const auto start = Clock::now();
  auto last_sent = start - std::chrono::hours(1);
  EvalCallbacks cb;
  cb.should_stop = callbacks.should_stop;
  cb.on_progress = [&](const EvalProgress& p) {
    if (!callbacks.on_progress) return;
    const auto now = Clock::now();
    const bool last = p.done >= p.total;
    if (!last && std::chrono::duration<double>(now - last_sent).count() < options_.progress_interval_s) return;
    last_sent = now;
    const double elapsed = std::chrono::duration<double>(now - start).count();
    v1::EvalProgressEvent e;
    e.set_model(model.ref());
    e.set_phase(phase);
    e.set_task(p.task_name);
    e.set_task_index(static_cast<int32_t>(p.task));
    e.set_tasks(static_cast<int32_t>(suite.tasks.size()));
    e.set_stage(p.phase);
    e.set_done(p.done);
    e.set_total(p.total);
    const double rate = elapsed > 0 ? static_cast<double>(p.done) / elapsed : 0;
    e.set_items_per_second(rate);
    e.set_eta_seconds(rate > 0 ? static_cast<double>(p.total - p.done) / rate : 0);
    callbacks.on_progress(e);
  };
  cb.on_task = [&](const EvalTaskReport& t) {
    if (callbacks.on_task) callbacks.on_task(eval_task_to_proto(t));
  };
  EvalRunOptions run_options;
  run_options.model_key = weights_key(model);
  run_options.cache = &cache_;
  const EvalReport report = run_eval_suite(suite, embedder, cb, run_options);
  return eval_report_to_proto(report, model.ref(), job_id);
}

}  // namespace refinery
