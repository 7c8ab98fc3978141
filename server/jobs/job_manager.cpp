#include "server/jobs/job_manager.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include <torch/torch.h>

#include <google/protobuf/util/json_util.h>

#include "core/base/atomic_file.h"
#include "core/base/clock.h"
#include "core/base/error.h"
#include "core/base/remove_tree.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "core/data/caption_dataset.h"
#include "core/data/epoch_plan.h"
#include "core/model/clip_config.h"
#include "core/model/clip_model.h"
#include "core/refine/refine_trainer.h"
#include "core/runtime/torch_runtime.h"
#include "core/train/training_precision.h"
#include "server/jobs/job_metrics.h"
#include "server/jobs/model_evaluation.h"
#include "server/jobs/sweep_grid.h"
#include "server/jobs/worker_group.h"
#include "server/models/model_registry.h"
#include "refinery/proto_json.h"
#include "server/runtime/log.h"
#include "server/store/job_store.h"
#include "spec/job_events.h"
#include "spec/job_spec.h"

namespace fs = std::filesystem;

namespace refinery {
namespace {

std::string new_job_id() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(now_ms()));
  std::lock_guard<std::mutex> lock(mu);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "job-%012llx", static_cast<unsigned long long>(rng() & 0xffffffffffffULL));
  return buf;
}

const char* state_name(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_QUEUED: return "QUEUED";
    case v1::JOB_STATE_RUNNING: return "RUNNING";
    case v1::JOB_STATE_CANCELLING: return "CANCELLING";
    case v1::JOB_STATE_SUCCEEDED: return "SUCCEEDED";
    case v1::JOB_STATE_FAILED: return "FAILED";
    case v1::JOB_STATE_CANCELLED: return "CANCELLED";
    default: return "UNSPECIFIED";
  }
}

bool is_eval_job(const v1::Job& job) { return job.spec().kind() == v1::JOB_KIND_EVAL; }

std::string describe_summary(const google::protobuf::Map<std::string, double>& summary) {
  std::string out;
  for (const char* k : {"mean_zeroshot_top1", "mean_text_to_image_r1", "mean_image_to_text_r1"}) {
    auto it = summary.find(k);
    if (it == summary.end()) continue;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%s=%.4f", out.empty() ? "" : ", ", k, it->second);
    out += buf;
  }
  return out;
}

ModelEvaluatorOptions evaluator_options(const std::string& device) {
  ModelEvaluatorOptions o;
  o.device = device;
  o.batch_size = resolve_device(device).is_cuda() ? 256 : 64;
  return o;
}

}  // namespace

bool JobManager::is_finished(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

JobManager::JobManager(JobManagerOptions options, ModelRegistry& models, JobMetrics* metrics)
    : options_(std::move(options)),
      models_(models),
      metrics_(metrics),
      evaluator_(std::make_unique<ModelEvaluator>(evaluator_options(options_.device))) {
  std::error_code ec;
  fs::create_directories(options_.data_dir, ec);
  if (ec) throw invalid_argument("cannot create --data-dir " + options_.data_dir + ": " + ec.message());
  JobStoreOptions store_options;
  store_options.max_step_events = options_.max_step_events;
  store_ = std::make_unique<JobStore>(options_.data_dir + "/jobs.db", store_options);
}

JobManager::~JobManager() { shutdown(); }

bool JobManager::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

CaptionDatasetOptions JobManager::data_options() const {
  CaptionDatasetOptions o;
  o.roots = &options_.data_roots;
  return o;
}

std::string JobManager::job_dir(const std::string& id) const { return options_.data_dir + "/jobs/" + id; }

void JobManager::start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return;
    started_ = true;
  }
  for (const v1::Job& job : store_->list_jobs({v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING})) {
    if (job.state() == v1::JOB_STATE_CANCELLING) {
      set_state(job.id(), v1::JOB_STATE_CANCELLED, "cancelled (the server stopped while cancelling)",
                [](v1::Job& j) { j.set_finished_unix_ms(now_ms()); });
    } else if (is_eval_job(job)) {
      set_state(job.id(), v1::JOB_STATE_QUEUED, "the server restarted: queued again, evaluates from the start");
      log_info("job %s: evaluation interrupted, queued again", job.id().c_str());
    } else {
      set_state(job.id(), v1::JOB_STATE_QUEUED,
                "the server restarted: queued again, resumes from its last checkpoint (step " +
                    std::to_string(job.step()) + " reached)");
      log_info("job %s: interrupted at step %lld, queued again", job.id().c_str(), static_cast<long long>(job.step()));
    }
  }
  refresh_state_metrics();
  runner_ = std::thread([this] { runner_loop(); });
}

void JobManager::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  runner_cv_.notify_all();
  events_cv_.notify_all();
  if (runner_.joinable()) runner_.join();
}

v1::Job JobManager::update(const std::string& id, const std::function<void(v1::Job&)>& mutate, v1::JobEvent* event) {
  v1::Job job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<v1::Job> current = store_->get_job(id);
    if (!current) throw not_found("no job " + id);
    job = std::move(*current);
    mutate(job);
    if (event != nullptr) {
      v1::JobEvent stored = store_->append_event(id, *event, &job);
      *event = stored;
      job.set_last_seq(stored.seq());
    } else {
      store_->update_job(job);
    }
  }
  events_cv_.notify_all();
  return job;
}

std::optional<v1::Job> JobManager::transition(const std::string& id,
                                              const std::function<std::optional<v1::JobEvent>(v1::Job&)>& decide) {
  v1::Job job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<v1::Job> current = store_->get_job(id);
    if (!current) throw not_found("no job " + id);
    job = std::move(*current);
    std::optional<v1::JobEvent> event = decide(job);
    if (!event) return std::nullopt;
    const v1::JobEvent stored = store_->append_event(id, *event, &job);
    job.set_last_seq(stored.seq());
  }
  events_cv_.notify_all();
  refresh_state_metrics();
  if (metrics_ != nullptr && is_finished(job.state())) metrics_->record_job_finished(state_name(job.state()));
  return job;
}

v1::Job JobManager::set_state(const std::string& id, v1::JobState state, const std::string& message,
                              const std::function<void(v1::Job&)>& also) {
  v1::JobEvent event = state_event(state, message);
  v1::Job job = update(id, [&](v1::Job& j) {
    j.set_state(state);
    if (also) also(j);
  }, &event);
  refresh_state_metrics();
  if (metrics_ != nullptr && is_finished(job.state())) metrics_->record_job_finished(state_name(job.state()));
  return job;
}

void JobManager::refresh_state_metrics() {
  if (metrics_ == nullptr) return;
  std::map<std::string, int> counts;
  for (auto s : {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING, v1::JOB_STATE_SUCCEEDED,
                 v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    counts[state_name(s)] = 0;
  }
  std::map<std::string, v1::JobState> state_of;
  for (const v1::Job& j : store_->list_jobs()) {
    counts[state_name(j.state())]++;
    state_of[j.id()] = j.state();
  }
  metrics_->set_jobs_by_state(counts);
  std::vector<SweepJobStates> sweeps;
  for (const v1::Sweep& sweep : store_->list_sweeps()) {
    SweepJobStates states{sweep.id(), {}};
    std::set<std::string> jobs;  // an epochs sweep's job serves several points
    for (const auto& point : sweep.points()) jobs.insert(point.job_id());
    for (const std::string& id : jobs) {
      const auto it = state_of.find(id);
      if (it != state_of.end()) states.jobs[state_name(it->second)]++;  // a deleted job is gone
    }
    sweeps.push_back(std::move(states));
  }
  metrics_->set_sweeps(sweeps);
}

v1::Job JobManager::submit(const v1::JobSpec& raw_spec, const std::string& client_request_id) {
  // A retried submit gets its first job back, without validating again.
  if (auto existing = store_->find_by_request_id(client_request_id)) return *existing;
  if (!v1::JobKind_IsValid(raw_spec.kind())) {
    throw invalid_argument("unknown job kind " + std::to_string(raw_spec.kind()) + " (REFINE or EVAL)");
  }
  if (raw_spec.kind() == v1::JOB_KIND_EVAL) return submit_eval(raw_spec, client_request_id);
  const PreparedJob prepared = prepare_refine(raw_spec);
  return enqueue(prepared.spec, client_request_id, prepared.total_steps, prepared.message);
}

JobManager::PreparedJob JobManager::prepare_refine(const v1::JobSpec& raw_spec, const std::string& name_suffix) const {
  if (!raw_spec.model().empty()) {
    throw invalid_argument("model names what an eval job evaluates; a refine job starts from base_model (--base)");
  }
  const bool from_scratch = raw_spec.init() == "random";
  if (raw_spec.base_model().empty() && !from_scratch) {
    throw invalid_argument("base_model is required (--base), or init=random with arch to pre-train from scratch");
  }
  if (raw_spec.data().empty()) throw invalid_argument("data is required (--data coco:ANN.json:IMAGES | csv:FILE | jsonl:FILE)");
  v1::JobSpec spec = with_defaults(raw_spec, options_.default_checkpoint_every, !resolve_device(options_.device).is_cuda());
  if (from_scratch) {
    if (spec.name().empty()) spec.set_name(spec.arch() + "-pretrained");
  } else {
    const ModelEntry base = models_.resolve(raw_spec.base_model());
    spec.set_base_model(base.ref());
    if (spec.name().empty()) spec.set_name(derived_model_name(base.name, spec.method()));
  }
  spec.set_name(spec.name() + name_suffix);
  ModelRegistry::validate_name(spec.name());
  const CaptionDataset data = load_caption_dataset(spec.data(), data_options());
  const RefineOptions options = refine_options_from_spec(spec);
  check_training_precision(options.precision, resolve_device(options_.device));
  const DatasetSplit split = split_dataset(data.items.size(), options.val_fraction, options.split_seed);
  if (static_cast<int64_t>(split.train.size()) < options.batch_size) {
    throw invalid_argument("data set " + spec.data() + " has " + std::to_string(split.train.size()) +
                           " training images (after the validation split), fewer than batch_size " +
                           std::to_string(options.batch_size));
  }
  spec.set_kind(v1::JOB_KIND_REFINE);
  std::string suite_note;
  if (!spec.eval_suite().empty()) {
    const PreparedEvalSuite suite = prepare_job_eval_suite(spec.eval_suite(), &options_.data_roots);
    spec.set_eval_suite(canonical_eval_suite(spec.eval_suite()));
    suite_note = "; suite '" + suite.name + "' evaluated before and after";
  }
  const int64_t steps_per_epoch = static_cast<int64_t>(split.train.size()) / options.batch_size;
  int64_t total = steps_per_epoch * options.epochs;
  if (options.max_steps > 0) total = std::min(total, options.max_steps);
  if (!spec.eval_at_epochs().empty()) {
    std::vector<int32_t> at(spec.eval_at_epochs().begin(), spec.eval_at_epochs().end());
    std::sort(at.begin(), at.end());
    std::string list;
    for (size_t i = 0; i < at.size(); ++i) {
      if (i > 0 && at[i] == at[i - 1]) throw invalid_argument("eval_at_epochs lists epoch " + std::to_string(at[i]) + " twice");
      if (at[i] < 1 || at[i] * steps_per_epoch >= total) {
        throw invalid_argument("eval_at_epochs: epoch " + std::to_string(at[i]) + " does not end before the run's last step (" +
                               std::to_string(total) + " steps, " + std::to_string(steps_per_epoch) + " per epoch)");
      }
      ModelRegistry::validate_name(epoch_model_name(spec.name(), at[i]));
      list += (list.empty() ? "" : ", ") + std::to_string(at[i]);
    }
    spec.clear_eval_at_epochs();
    for (int32_t e : at) spec.add_eval_at_epochs(e);
    suite_note += "; models taken at the end of epoch" + std::string(at.size() > 1 ? "s " : " ") + list;
  }
  PreparedJob out;
  out.spec = spec;
  out.total_steps = total;
  out.message = "queued: " + std::to_string(data.items.size()) + " images, " + std::to_string(data.caption_count()) +
                " captions, " + std::to_string(total) + " steps" + suite_note;
  return out;
}

v1::Job JobManager::submit_eval(const v1::JobSpec& raw_spec, const std::string& client_request_id) {
  if (!raw_spec.base_model().empty() || !raw_spec.data().empty() || !raw_spec.eval_at_epochs().empty()) {
    throw invalid_argument(
        "an eval job takes model and eval_suite; base_model and data (and eval_at_epochs) belong to refine jobs");
  }
  const ModelEntry model = models_.resolve(raw_spec.model());
  const PreparedEvalSuite suite = prepare_job_eval_suite(raw_spec.eval_suite(), &options_.data_roots);
  v1::JobSpec spec;
  spec.set_kind(v1::JOB_KIND_EVAL);
  spec.set_model(model.ref());
  spec.set_eval_suite(canonical_eval_suite(raw_spec.eval_suite()));
  int64_t images = 0, texts = 0;
  for (const auto& t : suite.tasks) {
    images += t.images();
    texts += t.texts();
  }
  return enqueue(spec, client_request_id, suite.total_items(),
                 "queued: evaluation of " + model.ref() + " over suite '" + suite.name + "': " +
                     std::to_string(suite.tasks.size()) + (suite.tasks.size() == 1 ? " task, " : " tasks, ") +
                     std::to_string(images) + " images, " +
                     std::to_string(texts) + " texts");
}

v1::Job JobManager::new_job(const v1::JobSpec& spec, const std::string& client_request_id, int64_t total) {
  v1::Job job;
  job.set_id(new_job_id());
  job.set_state(v1::JOB_STATE_QUEUED);
  job.set_kind(spec.kind());
  *job.mutable_spec() = spec;
  job.set_created_unix_ms(now_ms());
  job.set_client_request_id(client_request_id);
  job.set_total_steps(total);
  return job;
}

v1::Job JobManager::enqueue(const v1::JobSpec& spec, const std::string& client_request_id, int64_t total,
                            const std::string& message) {
  const size_t queued = store_->list_jobs({v1::JOB_STATE_QUEUED}).size();
  if (queued >= static_cast<size_t>(options_.max_queued_jobs)) {
    throw resource_exhausted(std::to_string(queued) + " jobs are queued already (--max-queued-jobs)");
  }
  const v1::Job job = new_job(spec, client_request_id, total);
  bool inserted = false;
  v1::Job stored;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stored = store_->insert_job(job, &inserted);
    if (inserted) {
      v1::JobEvent event;
      event.mutable_state()->set_state(v1::JOB_STATE_QUEUED);
      event.mutable_state()->set_message(message);
      v1::JobEvent e = store_->append_event(stored.id(), event, nullptr);
      stored.set_last_seq(e.seq());
    }
  }
  if (inserted) {
    log_info("job %s %s", stored.id().c_str(), message.c_str());
    refresh_state_metrics();
    runner_cv_.notify_all();
    events_cv_.notify_all();
  }
  return stored;
}

v1::Sweep JobManager::submit_sweep(const v1::SweepSpec& spec, const std::string& client_request_id) {
  if (!client_request_id.empty()) {  // a retried submit gets its first sweep back
    for (const v1::Sweep& s : store_->list_sweeps()) {
      if (s.client_request_id() == client_request_id) return get_sweep(s.id());
    }
  }
  if (spec.job().kind() == v1::JOB_KIND_EVAL) throw invalid_argument("a sweep runs refine jobs, not eval jobs");
  const std::vector<SweepGridPoint> points = expand_sweep(spec);
  const bool cpu = !resolve_device(options_.device).is_cuda();
  const std::vector<SweepGridJob> planned = plan_sweep_jobs(points, [&](const v1::JobSpec& point_spec) {
    try {  // a bad spec is refused below, naming its point
      const v1::JobSpec s = with_defaults(point_spec, options_.default_checkpoint_every, cpu);
      return s.schedule() == "constant" && s.max_steps() == 0;
    } catch (const Error&) {
      return false;
    }
  });
  const size_t queued = store_->list_jobs({v1::JOB_STATE_QUEUED}).size();
  if (queued + planned.size() > static_cast<size_t>(options_.max_queued_jobs)) {
    throw resource_exhausted("the sweep's " + std::to_string(planned.size()) + " jobs and the " + std::to_string(queued) +
                             " queued already exceed --max-queued-jobs " + std::to_string(options_.max_queued_jobs));
  }
  v1::Sweep sweep;
  sweep.set_id("sweep-" + new_job_id().substr(4));
  *sweep.mutable_spec() = spec;
  if (sweep.spec().name().empty()) {
    std::string name;
    for (const auto& axis : spec.axes()) name += (name.empty() ? "" : " x ") + axis.field();
    sweep.mutable_spec()->set_name(name);
  }
  sweep.set_created_unix_ms(now_ms());
  sweep.set_client_request_id(client_request_id);
  std::vector<v1::SweepPoint> sweep_points(points.size());
  std::vector<std::pair<v1::Job, v1::JobEvent>> jobs;
  std::set<std::string> names;
  for (const SweepGridJob& planned_job : planned) {
    std::string where, on_the_way;
    for (const auto& [index, epoch] : planned_job.points) {
      if (epoch == 0) {
        where = describe_sweep_point(points[index].values, spec);
      } else {
        on_the_way += (on_the_way.empty() ? "" : ", ") + std::to_string(epoch);
      }
    }
    if (!on_the_way.empty()) where += " (and epochs " + on_the_way + " on the way)";
    PreparedJob prepared;
    try {
      prepared = prepare_refine(planned_job.spec, planned_job.name_suffix);
    } catch (const Error& e) {
      throw Error(e.code(), "sweep point " + where + ": " + e.what());
    }
    std::vector<std::string> models = {prepared.spec.name()};
    for (int32_t e : prepared.spec.eval_at_epochs()) models.push_back(epoch_model_name(prepared.spec.name(), e));
    for (const auto& m : models) {
      if (!names.insert(m).second) throw invalid_argument("sweep points give two models the name " + m);
    }
    v1::Job job = new_job(prepared.spec, "", prepared.total_steps);
    v1::JobEvent event;
    event.mutable_state()->set_state(v1::JOB_STATE_QUEUED);
    event.mutable_state()->set_message(prepared.message + "; sweep " + sweep.id() + " at " + where);
    for (const auto& [index, epoch] : planned_job.points) {
      v1::SweepPoint& p = sweep_points[index];
      for (const auto& [k, v] : points[index].values) (*p.mutable_values())[k] = v;
      p.set_job_id(job.id());
      p.set_epoch(epoch);
    }
    jobs.emplace_back(std::move(job), std::move(event));
  }
  for (auto& p : sweep_points) *sweep.add_points() = std::move(p);
  bool inserted = false;
  v1::Sweep stored;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stored = store_->insert_sweep(sweep, jobs, &inserted);
  }
  if (inserted) {
    log_info("sweep %s queued: %zu jobs over %s", stored.id().c_str(), jobs.size(), stored.spec().name().c_str());
    refresh_state_metrics();
    runner_cv_.notify_all();
    events_cv_.notify_all();
  }
  return get_sweep(stored.id());
}

v1::Sweep JobManager::get_sweep(const std::string& id) const {
  std::optional<v1::Sweep> sweep = store_->get_sweep(id);
  if (!sweep) throw not_found("no sweep " + id);
  std::set<std::string> seen;  // points of an epochs sweep share a job
  for (const auto& p : sweep->points()) {
    if (!seen.insert(p.job_id()).second) continue;
    if (auto job = store_->get_job(p.job_id())) *sweep->add_jobs() = *job;
  }
  return *sweep;
}

std::vector<v1::Sweep> JobManager::list_sweeps() const {
  std::vector<v1::Sweep> out;
  for (const v1::Sweep& s : store_->list_sweeps()) out.push_back(get_sweep(s.id()));
  return out;
}

v1::Sweep JobManager::cancel_sweep(const std::string& id) {
  const v1::Sweep sweep = get_sweep(id);
  for (const v1::Job& job : sweep.jobs()) {
    if (is_finished(job.state()) || job.state() == v1::JOB_STATE_CANCELLING) continue;
    try {
      cancel(job.id());
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kFailedPrecondition) throw;  // it ended meanwhile
    }
  }
  return get_sweep(id);
}

v1::Job JobManager::get(const std::string& id) const {
  std::optional<v1::Job> job = store_->get_job(id);
  if (!job) throw not_found("no job " + id);
  return *job;
}

std::vector<v1::Job> JobManager::list(const std::vector<v1::JobState>& states) const { return store_->list_jobs(states); }

// Cancel, resume and the runner's pick-up check the state and change it in
// one transaction under mu_, so that they cannot interleave: a job the
// runner takes is QUEUED at that moment, a cancelled job never runs, and a
// job that has ended is never marked CANCELLING.
v1::Job JobManager::cancel(const std::string& id) {
  std::optional<v1::Job> changed = transition(id, [&](v1::Job& j) -> std::optional<v1::JobEvent> {
    switch (j.state()) {
      case v1::JOB_STATE_QUEUED:
        j.set_state(v1::JOB_STATE_CANCELLED);
        j.set_finished_unix_ms(now_ms());
        return state_event(v1::JOB_STATE_CANCELLED, "cancelled before it started");
      case v1::JOB_STATE_RUNNING:
        if (running_id_ != id) {  // not on the runner (stored so by a crash, not yet queued again)
          j.set_state(v1::JOB_STATE_CANCELLED);
          j.set_finished_unix_ms(now_ms());
          return state_event(v1::JOB_STATE_CANCELLED, "cancelled while waiting to run again");
        }
        cancel_running_ = true;
        j.set_state(v1::JOB_STATE_CANCELLING);
        return state_event(v1::JOB_STATE_CANCELLING, "cancelling: stopping at the next step");
      case v1::JOB_STATE_CANCELLING:
        return std::nullopt;
      default:
        throw failed_precondition("job " + id + " has already ended (" + state_name(j.state()) + ")");
    }
  });
  return changed ? *changed : get(id);
}

v1::Job JobManager::resume(const std::string& id) {
  std::optional<v1::Job> job = transition(id, [&](v1::Job& j) -> std::optional<v1::JobEvent> {
    if (j.state() != v1::JOB_STATE_CANCELLED && j.state() != v1::JOB_STATE_FAILED) {
      throw failed_precondition("job " + id + " is " + state_name(j.state()) +
                                ": only CANCELLED or FAILED jobs can be resumed");
    }
    const char* how = is_eval_job(j) ? "resumed: queued again, evaluates from the start"
                      : !j.result_model().empty()
                          ? "resumed: queued again, evaluates the result model"
                          : "resumed: queued again, continues from its last checkpoint";
    j.set_state(v1::JOB_STATE_QUEUED);
    j.set_error("");
    j.set_finished_unix_ms(0);
    return state_event(v1::JOB_STATE_QUEUED, how);
  });
  runner_cv_.notify_all();
  return *job;
}

void JobManager::remove(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);  // not resumed meanwhile
    std::optional<v1::Job> job = store_->get_job(id);
    if (!job) throw not_found("no job " + id);
    if (!is_finished(job->state())) {
      throw failed_precondition("job " + id + " is " + state_name(job->state()) +
                                ": cancel it first (only finished jobs can be deleted)");
    }
    store_->delete_job(id);
  }
  std::error_code ec;
  remove_tree(job_dir(id), ec);
  refresh_state_metrics();
  events_cv_.notify_all();
}

std::vector<v1::JobEvent> JobManager::events(const std::string& id, int64_t from_seq, std::chrono::milliseconds wait,
                                             bool* finished) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    std::optional<v1::Job> job = store_->get_job(id);
    if (!job) throw not_found("no job " + id);
    std::vector<v1::JobEvent> out = store_->events(id, std::max<int64_t>(from_seq, 1), 1000);
    const bool ended = is_finished(job->state());
    *finished = ended && (out.empty() || out.back().seq() >= job->last_seq());
    if (!out.empty() || ended) return out;
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return out;
    if (events_cv_.wait_until(lock, deadline) == std::cv_status::timeout) return out;
  }
}

void JobManager::runner_loop() {
  for (;;) {
    std::string next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        if (stopping_) return;
        std::vector<v1::Job> queued = store_->list_jobs({v1::JOB_STATE_QUEUED});
        if (!queued.empty()) {
          next = queued.front().id();
          running_id_ = next;
          cancel_running_ = false;
          break;
        }
        runner_cv_.wait_for(lock, std::chrono::seconds(5));
      }
    }
    run_job(next);
    std::lock_guard<std::mutex> lock(mu_);
    running_id_.clear();
    cancel_running_ = false;
  }
}

void JobManager::run_job(const std::string& id) {
  std::optional<v1::Job> taken = transition(id, [&](v1::Job& j) -> std::optional<v1::JobEvent> {
    if (j.state() != v1::JOB_STATE_QUEUED) return std::nullopt;  // cancelled since the runner chose it
    j.set_state(v1::JOB_STATE_RUNNING);
    if (j.started_unix_ms() == 0) j.set_started_unix_ms(now_ms());
    return state_event(v1::JOB_STATE_RUNNING, "running");
  });
  if (!taken) return;
  const v1::Job job = *taken;
  auto cancelled = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return cancel_running_;
  };
  auto stopping = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_ || cancel_running_;
  };
  try {
    if (is_eval_job(job)) {
      run_eval_job(job, stopping);
    } else {
      run_refine_job(job, stopping);
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kCancelled && stopping()) {
      job_stopped(id, cancelled());
    } else {
      job_failed(id, e.what());
    }
  } catch (const std::exception& e) {
    job_failed(id, e.what());
  }
  if (metrics_ != nullptr) metrics_->job_ended(id);
}

void JobManager::job_stopped(const std::string& id, bool cancelled) {
  if (!cancelled) {
    log_info("job %s interrupted by shutdown; it runs again at the next start", id.c_str());
    return;
  }
  const v1::Job job = get(id);
  std::string message;
  if (is_eval_job(job)) {
    message = "cancelled; `jobs resume` evaluates from the start";
  } else if (!job.spec().eval_suite().empty() && !job.has_base_eval_report()) {
    message = "cancelled while evaluating the base, before the first step; `jobs resume` starts with that evaluation";
  } else if (!job.result_model().empty()) {
    message = "cancelled while evaluating the result; model " + job.result_model() +
              " is registered, `jobs resume` evaluates it";
  } else {
    message = "cancelled; `jobs resume` continues from the checkpoint just written";
  }
  set_state(id, v1::JOB_STATE_CANCELLED, message, [](v1::Job& j) { j.set_finished_unix_ms(now_ms()); });
  log_info("job %s cancelled", id.c_str());
}

void JobManager::job_failed(const std::string& id, const std::string& why) {
  log_error("job %s failed: %s", id.c_str(), why.c_str());
  try {
    set_state(id, v1::JOB_STATE_FAILED, "failed: " + why, [&](v1::Job& j) {
      j.set_error(why);
      j.set_finished_unix_ms(now_ms());
    });
  } catch (const std::exception& e2) {
    log_error("job %s: cannot record its failure: %s", id.c_str(), e2.what());
  }
}

v1::EvalReport JobManager::evaluate_in_job(const std::string& id, const ModelEntry& model,
                                           const std::string& suite_json, const std::string& phase,
                                           const std::function<bool()>& stopping) {
  // Checked again: the files may have changed since the submit.
  const PreparedEvalSuite suite = prepare_job_eval_suite(suite_json, &options_.data_roots);
  log_info("job %s: evaluating %s over suite '%s' (%s, %zu tasks, %lld items)", id.c_str(), model.ref().c_str(),
           suite.name.c_str(), phase.c_str(), suite.tasks.size(), static_cast<long long>(suite.total_items()));
  const bool counts_steps = phase == "eval";
  ModelEvaluationCallbacks cb;
  cb.should_stop = stopping;
  cb.on_progress = [&](const v1::EvalProgressEvent& p) {
    v1::JobEvent event;
    *event.mutable_eval_progress() = p;
    update(id, [&](v1::Job& j) {
      if (!counts_steps) return;
      j.set_step(p.done());
      j.set_total_steps(p.total());
    }, &event);
    if (metrics_ != nullptr) metrics_->record_eval_progress(id, p.done(), p.total(), p.items_per_second());
  };
  cb.on_task = [&](const v1::EvalTaskResult& t) {
    v1::JobEvent event;
    event.mutable_eval_task()->set_model(model.ref());
    event.mutable_eval_task()->set_phase(phase);
    *event.mutable_eval_task()->mutable_result() = t;
    update(id, [](v1::Job&) {}, &event);
    if (metrics_ != nullptr) metrics_->record_eval_task(t.kind(), t.n());
    log_info("job %s: %s task '%s' on %s done in %.1f s", id.c_str(), phase.c_str(), t.name().c_str(),
             model.ref().c_str(), t.seconds());
  };
  v1::EvalReport report = evaluator_->evaluate(model, suite, phase, id, cb);
  report.set_suite_digest(eval_suite_digest(suite_json));
  models_.record_evaluation(model.ref(), report);
  return report;
}

void JobManager::run_eval_job(const v1::Job& job, const std::function<bool()>& stopping) {
  const std::string& id = job.id();
  const ModelEntry model = models_.resolve(job.spec().model());
  const v1::EvalReport report = evaluate_in_job(id, model, job.spec().eval_suite(), "eval", stopping);
  v1::JobEvent event;
  event.mutable_eval()->set_step(job.total_steps());
  *event.mutable_eval()->mutable_metrics() = report.summary();
  update(id, [&](v1::Job& j) {
    *j.mutable_eval_report() = report;
    *j.mutable_metrics() = report.summary();
  }, &event);
  if (metrics_ != nullptr) {
    metrics_->record_eval(id, std::map<std::string, double>(report.summary().begin(), report.summary().end()));
  }
  const std::string summary = describe_summary(report.summary());
  set_state(id, v1::JOB_STATE_SUCCEEDED,
            "succeeded: suite '" + report.suite() + "' on " + model.ref() + (summary.empty() ? "" : ": " + summary),
            [](v1::Job& j) { j.set_finished_unix_ms(now_ms()); });
  log_info("job %s succeeded: suite '%s' on %s", id.c_str(), report.suite().c_str(), model.ref().c_str());
}

std::string JobManager::register_trained(const v1::Job& job, ClipModel& trained, const std::string& name,
                                         const std::string& file, int32_t epochs,
                                         const std::map<std::string, double>& metrics,
                                         const v1::EvalReport& base_report) {
  const v1::JobSpec& spec = job.spec();
  const bool from_scratch = spec.init() == "random";
  // Written atomically, then registered with its lineage.
  const std::string models_dir = options_.data_dir + "/models";
  fs::create_directories(models_dir);
  const std::string path = models_dir + "/" + file + ".safetensors";
  Lineage lineage;
  lineage.base_model = from_scratch ? "random:" + spec.arch() : spec.base_model();
  lineage.job_id = job.id();
  lineage.data = spec.data();
  lineage.method = spec.method();
  RefineOptions options = refine_options_from_spec(spec);
  options.epochs = epochs;
  lineage.hyperparameters = options.to_map();
  if (from_scratch) {
    lineage.hyperparameters["init"] = "random";
    lineage.hyperparameters["arch"] = spec.arch();
  }
  lineage.metrics = metrics;
  if (!spec.eval_suite().empty() && !from_scratch) lineage.base_evaluations[base_report.suite()] = base_report;
  for (auto& [suite, r] : lineage.base_evaluations) {
    for (auto& t : *r.mutable_tasks()) t.clear_details_json();
  }
  CheckpointWriteOptions write_options;
  write_options.metadata["refinery.job"] = job.id();
  write_options.metadata["refinery.base_model"] = lineage.base_model;
  write_options.metadata["refinery.method"] = spec.method();
  CheckpointWriter::write_safetensors(trained, path, write_options);
  return models_.import(path, name, "", /*make_default=*/false, lineage).ref();
}

void JobManager::record_step(const std::string& id, const StepReport& r, int64_t& skipped_reported) {
  v1::JobEvent event = step_event(r);
  update(id, [&](v1::Job& j) {
    j.set_step(r.step);
    j.set_total_steps(r.total_steps);
    j.set_epoch(r.epoch);
  }, &event);
  if (metrics_ != nullptr) {
    metrics_->record_step(id, r);
    if (r.images_skipped > skipped_reported) metrics_->record_images_skipped(r.images_skipped - skipped_reported);
  }
  skipped_reported = r.images_skipped;
}

void JobManager::record_eval(const std::string& id, int64_t step, const std::map<std::string, double>& m) {
  v1::JobEvent event = eval_event(step, m);
  update(id, [&](v1::Job& j) {
    j.mutable_metrics()->clear();
    for (const auto& [k, v] : m) (*j.mutable_metrics())[k] = v;
  }, &event);
  if (metrics_ != nullptr) metrics_->record_eval(id, m);
}

void JobManager::record_checkpoint(const std::string& id, const TrainingCheckpointInfo& written) {
  store_->add_checkpoint(id, CheckpointRecord{written.step, written.path, now_ms()});
  v1::JobEvent event = checkpoint_event(written);
  update(id, [](v1::Job&) {}, &event);
}

std::string JobManager::train_on_workers(const v1::Job& job, const std::string& base_path,
                                         const std::string& base_config, const std::string& checkpoint_dir,
                                         const v1::EvalReport& base_report, const std::function<bool()>& stopping) {
  const std::string& id = job.id();
  const v1::JobSpec& spec = job.spec();
  const std::string dir = job_dir(id);
  fs::create_directories(dir);
  // What the workers run: the job's spec with the base model's file for its
  // name; evaluation suites and registration stay with the server.
  v1::JobSpec worker_spec = spec;
  if (!base_path.empty()) worker_spec.set_base_model(base_path);
  for (const char* field : {"name", "eval_suite", "eval_at_epochs", "workers", "devices", "kind", "model"}) {
    worker_spec.GetReflection()->ClearField(&worker_spec, v1::JobSpec::descriptor()->FindFieldByName(field));
  }
  const std::string spec_path = dir + "/worker-spec.json";
  write_file_atomically(spec_path, proto_to_json(worker_spec).dump(2) + "\n");
  const std::string output = dir + "/worker-output.safetensors";

  WorkerGroupOptions o;
  o.program = find_worker_program();
  o.workers = spec.workers();
  o.args = {"--file", spec_path, "--output", output, "--checkpoint-dir", checkpoint_dir, "--dist-timeout", "120"};
  if (!base_config.empty()) o.args.insert(o.args.end(), {"--model-config", base_config});
  if (spec.devices().empty()) {
    o.args.insert(o.args.end(), {"--device", options_.device});
  } else {
    o.devices = split_devices(spec.devices());
  }
  o.threads_per_worker = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / o.workers);
  o.log_dir = dir;
  log_info("job %s running on %d worker processes (%s, logs in %s/worker-*.log)", id.c_str(), o.workers,
           spec.devices().empty() ? options_.device.c_str() : spec.devices().c_str(), dir.c_str());

  int64_t skipped_reported = 0;
  std::map<std::string, double> last_metrics;
  const auto on_event = [&](const nlohmann::json& e) {
    if (e.contains("step")) {
      v1::StepEvent step;
      const auto status = google::protobuf::util::JsonStringToMessage(e.at("step").dump(), &step);
      if (!status.ok()) throw internal_error("a worker's step event: " + std::string(status.message()));
      record_step(id, step_report(step), skipped_reported);
    } else if (e.contains("eval")) {
      const auto& ev = e.at("eval");
      std::map<std::string, double> m = ev.at("metrics").get<std::map<std::string, double>>();
      last_metrics = m;
      record_eval(id, ev.at("step").get<int64_t>(), m);
    } else if (e.contains("checkpoint")) {
      TrainingCheckpointInfo written;
      written.step = e.at("checkpoint").at("step").get<int64_t>();
      written.path = e.at("checkpoint").at("path").get<std::string>();
      record_checkpoint(id, written);
      // The workers prune their own folders; their records go with them.
      for (const auto& c : store_->checkpoints(id)) {
        if (!fs::exists(c.path)) store_->remove_checkpoint(id, c.step);
      }
    } else if (e.contains("state")) {
      const auto& st = e.at("state");
      log_info("job %s: workers: %s %s", id.c_str(), st.value("state", "").c_str(), st.value("message", "").c_str());
    }
  };
  if (WorkerGroup::run(o, on_event, stopping) == WorkerOutcome::kStopped) {
    throw Error(ErrorCode::kCancelled, "training stopped");
  }
  CheckpointReadOptions read_options;
  read_options.model_config_path = base_config;
  ClipModel trained = CheckpointReader::load_model(output, read_options);
  const std::string ref = register_trained(job, trained, spec.name(), id, spec.epochs(), last_metrics, base_report);
  std::error_code ec;
  fs::remove(output, ec);
  return ref;
}

void JobManager::run_refine_job(const v1::Job& job, const std::function<bool()>& stopping) {
  const std::string& id = job.id();
  const v1::JobSpec& spec = job.spec();
  const bool evaluates = !spec.eval_suite().empty();
  const std::string checkpoint_dir = job_dir(id) + "/checkpoints";
  const bool from_scratch = spec.init() == "random";
  std::string result_ref = job.result_model();
  if (result_ref.empty()) {
    v1::EvalReport base_report = job.base_eval_report();
    const bool on_workers = spec.workers() > 1;
    std::string base_path, base_config;  // workers load the base themselves
    ClipModel model{nullptr};
    if (from_scratch) {
      // Pre-training: CLIP's initialisation, seeded; the weights of a
      // resumed job come from its checkpoint.
      model = ClipModel(builtin_architecture(spec.arch()));
      model->reset_parameters_random(spec.seed());
    } else {
      const ModelEntry base = models_.resolve(spec.base_model());
      if (evaluates && !job.has_base_eval_report()) {
        // Before the first step; a resumed job has it already, and a base
        // measured on the very same suite (a sweep's other jobs) is not
        // measured again.
        const auto known = base.lineage.evaluations.find(eval_suite_name(spec.eval_suite()));
        if (known != base.lineage.evaluations.end() &&
            known->second.suite_digest() == eval_suite_digest(spec.eval_suite())) {
          base_report = known->second;
          log_info("job %s: %s has a report of suite '%s' (job %s): not evaluated again", id.c_str(),
                   base.ref().c_str(), base_report.suite().c_str(), base_report.job_id().c_str());
        } else {
          base_report = evaluate_in_job(id, base, spec.eval_suite(), "base", stopping);
        }
        update(id, [&](v1::Job& j) { *j.mutable_base_eval_report() = base_report; }, nullptr);
      }
      base_path = base.path;
      base_config = base.model_config_path;
      if (!on_workers) {
        CheckpointReadOptions read_options;
        read_options.model_config_path = base.model_config_path;
        model = CheckpointReader::load_model(base.path, read_options);
      }
    }
    if (on_workers) {
      result_ref = train_on_workers(job, base_path, base_config, checkpoint_dir, base_report, stopping);
    } else {
    auto data = std::make_shared<CaptionDataset>(load_caption_dataset(spec.data(), data_options()));
    const RefineOptions options = refine_options_from_spec(spec);
    const c10::Device device = resolve_device(options_.device);
    RefineTrainer trainer(std::move(model), data, options, device, checkpoint_dir);
    log_info("job %s running: %lld steps of %lld pairs on %s (%s), %zu training / %zu validation images", id.c_str(),
             static_cast<long long>(trainer.total_steps()), static_cast<long long>(options.batch_size),
             device.str().c_str(), trainer.uses_bf16() ? "bf16 autocast" : "fp32", trainer.train_images(),
             trainer.val_images());

    int64_t skipped_reported = 0;
    TrainerCallbacks cb;
    cb.should_stop = stopping;
    cb.on_log = [&](const std::string& m) { log_info("job %s: %s", id.c_str(), m.c_str()); };
    cb.on_step = [&](const StepReport& r) { record_step(id, r, skipped_reported); };
    cb.on_eval = [&](int64_t step, const std::map<std::string, double>& m) { record_eval(id, step, m); };
    cb.on_checkpoint = [&](const TrainingCheckpointInfo& written, const std::vector<TrainingCheckpointInfo>& removed) {
      for (const auto& r : removed) store_->remove_checkpoint(id, r.step);
      record_checkpoint(id, written);
    };

    // Models taken at the end of listed epochs. One registered by an earlier
    // attempt that stopped before its evaluation ended is evaluated first;
    // one whose epoch comes again (a crash before the next checkpoint) is
    // the same weights and is not registered twice.
    const std::set<int32_t> take(spec.eval_at_epochs().begin(), spec.eval_at_epochs().end());
    auto evaluate_epoch_model = [&](int32_t epoch, const std::string& ref) {
      if (!evaluates) return;
      try {
        const v1::EvalReport report =
            evaluate_in_job(id, models_.resolve(ref), spec.eval_suite(), "epoch " + std::to_string(epoch), stopping);
        update(id, [&](v1::Job& j) {
          for (auto& r : *j.mutable_epoch_results()) {
            if (r.epoch() == epoch) *r.mutable_eval_report() = report;
          }
        }, nullptr);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kCancelled || !stopping()) throw;  // stopped: the trainer checkpoints
      }
    };
    const v1::Job so_far = get(id);
    for (const auto& r : so_far.epoch_results()) {
      if (!r.has_eval_report()) evaluate_epoch_model(r.epoch(), r.model());
      if (stopping()) throw Error(ErrorCode::kCancelled, "training stopped");
    }
    cb.on_epoch_end = [&](int32_t epoch, int64_t step) {
      if (!take.count(epoch)) return;
      const v1::Job now = get(id);
      for (const auto& r : now.epoch_results()) {
        if (r.epoch() != epoch) continue;
        if (!r.has_eval_report()) evaluate_epoch_model(epoch, r.model());
        return;
      }
      const std::string ref = register_trained(job, trainer.student(), epoch_model_name(spec.name(), epoch),
                                               id + "-epoch-" + std::to_string(epoch), epoch, {}, base_report);
      v1::JobEvent event = result_event(ref, epoch);
      update(id, [&](v1::Job& j) {
        v1::EpochResult* r = j.add_epoch_results();
        r->set_epoch(epoch);
        r->set_step(step);
        r->set_model(ref);
      }, &event);
      log_info("job %s: model %s taken at the end of epoch %d", id.c_str(), ref.c_str(), epoch);
      evaluate_epoch_model(epoch, ref);
    };

    if (trainer.run(cb) == TrainOutcome::kStopped) throw Error(ErrorCode::kCancelled, "training stopped");

    result_ref =
        register_trained(job, trainer.student(), spec.name(), id, spec.epochs(), trainer.last_metrics(), base_report);
    }
    v1::JobEvent result = result_event(result_ref);
    update(id, [&](v1::Job& j) { j.set_result_model(result_ref); }, &result);
    log_info("job %s: model %s registered", id.c_str(), result_ref.c_str());
    // The model is saved; the training checkpoints are no longer needed.
    for (const auto& c : store_->checkpoints(id)) store_->remove_checkpoint(id, c.step);
    std::error_code ec;
    remove_tree(checkpoint_dir, ec);
  }

  if (evaluates) {
    const ModelEntry result = models_.resolve(result_ref);
    const v1::EvalReport report = evaluate_in_job(id, result, spec.eval_suite(), "result", stopping);
    update(id, [&](v1::Job& j) { *j.mutable_eval_report() = report; }, nullptr);
  }
  set_state(id, v1::JOB_STATE_SUCCEEDED, "succeeded: model " + result_ref,
            [](v1::Job& j) { j.set_finished_unix_ms(now_ms()); });
  log_info("job %s succeeded: model %s", id.c_str(), result_ref.c_str());
}

}  // namespace refinery
