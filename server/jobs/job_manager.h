// Jobs, in one queue: refine jobs (CLIP-Refine of a base model, optionally
// with an evaluation suite run before the first step and on the result) and
// eval jobs (a suite on a model, model_evaluation.h). Validated at submit,
// kept in the SQLite job store under --data-dir, run one at a time on the
// server's device by a runner thread, with every state change, step,
// evaluation, checkpoint and result recorded as a numbered event that
// watchers replay and follow. Jobs survive restarts and crashes: an
// interrupted refine job is queued again at start and resumes from its last
// checkpoint (an eval job evaluates again). A failing job ends FAILED with
// its reason; the server and other jobs carry on.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/base/path_roots.h"
#include "core/data/caption_dataset.h"
#include "refinery/v1/job.pb.h"

namespace refinery {

class JobMetrics;
class JobStore;
class ModelEvaluator;
class ModelRegistry;
class ClipModel;
class RefineTrainer;
struct ModelEntry;
struct StepReport;
struct TrainingCheckpointInfo;

struct JobManagerOptions {
  std::string data_dir;                 // jobs.db, jobs/<id>/checkpoints, refined models
  std::string device = "cpu";           // where training runs
  int max_queued_jobs = 64;             // beyond: RESOURCE_EXHAUSTED
  int64_t default_checkpoint_every = 100;
  PathRoots data_roots;                 // where data sets and eval sets may lie (--data-root); none: anywhere
  int64_t max_step_events = 10'000;     // per job; older step events are thinned beyond (JobStore)
};

class JobManager {
 public:
  JobManager(JobManagerOptions options, ModelRegistry& models, JobMetrics* metrics = nullptr);
  ~JobManager();  // shutdown()
  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // Requeues jobs a previous run left RUNNING, finishes CANCELLING ones, and
  // starts the runner.
  void start();
  // Stops the runner: a running job checkpoints where it is and stays
  // RUNNING in the store, to resume at the next start.
  void shutdown();

  // Validates (base model, data set, options; or the model and every file
  // of the suite) and queues. The same non-empty
  // client_request_id returns the first job instead of a new one.
  v1::Job submit(const v1::JobSpec& spec, const std::string& client_request_id);
  v1::Job get(const std::string& id) const;
  std::vector<v1::Job> list(const std::vector<v1::JobState>& states) const;
  v1::Job cancel(const std::string& id);
  v1::Job resume(const std::string& id);
  void remove(const std::string& id);  // finished jobs only; drops their checkpoints

  // Sweeps (sweep.h): every point checked as a submit would, then all its
  // jobs queued in one transaction. The same non-empty client_request_id
  // returns the first sweep.
  v1::Sweep submit_sweep(const v1::SweepSpec& spec, const std::string& client_request_id);
  v1::Sweep get_sweep(const std::string& id) const;  // with its jobs
  std::vector<v1::Sweep> list_sweeps() const;        // with their jobs
  v1::Sweep cancel_sweep(const std::string& id);     // cancels its jobs that have not ended

  // Events with seq >= from_seq. When there are none yet and the job is not
  // finished, waits up to `wait` for some. *finished: the job has ended
  // and no event after the returned ones will come.
  std::vector<v1::JobEvent> events(const std::string& id, int64_t from_seq, std::chrono::milliseconds wait,
                                   bool* finished);

  bool stopping() const;
  static bool is_finished(v1::JobState state);

 private:
  struct Running;
  void runner_loop();
  void run_job(const std::string& id);
  void run_refine_job(const v1::Job& job, const std::function<bool()>& stopping);
  void run_eval_job(const v1::Job& job, const std::function<bool()>& stopping);
  // Runs the suite on `model`, streaming progress and tasks as the job's
  // events, and keeps the report in the model's lineage.
  v1::EvalReport evaluate_in_job(const std::string& id, const ModelEntry& model, const std::string& suite_json,
                                 const std::string& phase, const std::function<bool()>& stopping);
  // A refine job's training as spec.workers() processes (worker_group.h):
  // their events become the job's; returns the registered result's ref.
  std::string train_on_workers(const v1::Job& job, const std::string& base_path, const std::string& base_config,
                               const std::string& checkpoint_dir, const v1::EvalReport& base_report,
                               const std::function<bool()>& stopping);
  // The job's step, evaluation and checkpoint reports: its events, state and metrics.
  void record_step(const std::string& id, const StepReport& r, int64_t& skipped_reported);
  void record_eval(const std::string& id, int64_t step, const std::map<std::string, double>& m);
  void record_checkpoint(const std::string& id, const TrainingCheckpointInfo& written);
  // Writes the trained weights to data_dir/models/FILE.safetensors and
  // registers them as `name`, with the job's lineage after `epochs` epochs.
  std::string register_trained(const v1::Job& job, ClipModel& trained, const std::string& name,
                               const std::string& file, int32_t epochs, const std::map<std::string, double>& metrics,
                               const v1::EvalReport& base_report);
  void job_stopped(const std::string& id, bool cancelled);  // cancelled, or left RUNNING for the next start
  void job_failed(const std::string& id, const std::string& why);
  struct PreparedJob {
    v1::JobSpec spec;  // with its defaults, its base resolved
    int64_t total_steps = 0;
    std::string message;  // of its QUEUED event
  };
  // Every check of a refine job's submit, without queuing it; the model's
  // name (given or derived) gets `name_suffix` (a sweep point's).
  PreparedJob prepare_refine(const v1::JobSpec& spec, const std::string& name_suffix = "") const;
  static v1::Job new_job(const v1::JobSpec& spec, const std::string& client_request_id, int64_t total);
  v1::Job submit_eval(const v1::JobSpec& spec, const std::string& client_request_id);
  v1::Job enqueue(const v1::JobSpec& spec, const std::string& client_request_id, int64_t total,
                  const std::string& message);
  // Reads the job, lets `mutate` change it, stores it with `event` (when
  // given) in one transaction, and wakes the watchers.
  v1::Job update(const std::string& id, const std::function<void(v1::Job&)>& mutate, v1::JobEvent* event);
  // Under mu_, in one transaction: reads the job, lets `decide` check its
  // state and change it, returning the event to record with it (nothing:
  // leave the job as it is, and return nothing). `decide` throws to refuse.
  std::optional<v1::Job> transition(const std::string& id,
                                    const std::function<std::optional<v1::JobEvent>(v1::Job&)>& decide);
  v1::Job set_state(const std::string& id, v1::JobState state, const std::string& message,
                    const std::function<void(v1::Job&)>& also = {});
  std::string job_dir(const std::string& id) const;
  CaptionDatasetOptions data_options() const;  // confined to options_.data_roots
  void refresh_state_metrics();

  JobManagerOptions options_;
  ModelRegistry& models_;
  JobMetrics* metrics_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<ModelEvaluator> evaluator_;  // its classifier cache outlives jobs
  mutable std::mutex mu_;
  std::condition_variable runner_cv_;  // new work or stopping
  std::condition_variable events_cv_;  // new events
  std::string running_id_;
  bool cancel_running_ = false;
  bool stopping_ = false;
  bool started_ = false;
  std::thread runner_;
};

}  // namespace refinery
