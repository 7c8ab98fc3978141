#include "server/jobs/job_metrics.h"

#include <cmath>

#include "core/refine/refine_trainer.h"

namespace refinery {

JobMetrics::JobMetrics(MetricsRegistry& r)
    : jobs_(r.gauge("refinery_jobs", "Refine jobs by state", {"state"})),
      step_(r.gauge("refinery_job_step", "Steps done by the running job", {"job_id"})),
      total_steps_(r.gauge("refinery_job_total_steps", "Steps the running job will take", {"job_id"})),
      loss_(r.gauge("refinery_job_loss", "The running job's latest training loss, by term (total, rafa, hycd, contrastive, align)",
                    {"job_id", "term"})),
      lr_(r.gauge("refinery_job_learning_rate", "The running job's learning rate", {"job_id"})),
      samples_per_second_(r.gauge("refinery_job_samples_per_second", "The running job's training throughput (latest step)", {"job_id"})),
      data_seconds_(r.gauge("refinery_job_data_seconds", "Time the running job's latest step waited for data", {"job_id"})),
      eval_(r.gauge("refinery_job_eval", "The running job's latest evaluation on its validation split", {"job_id", "metric"})),
      steps_total_(r.counter("refinery_job_steps_total", "Training steps done by all jobs")),
      samples_total_(r.counter("refinery_job_samples_total", "Training pairs processed by all jobs")),
      images_skipped_(r.counter("refinery_job_images_skipped_total", "Training images skipped because they failed to decode")),
      eval_progress_(r.gauge("refinery_job_eval_progress", "Share of the running evaluation's items (images + texts) embedded", {"job_id"})),
      eval_items_per_second_(r.gauge("refinery_job_eval_items_per_second", "The running evaluation's throughput (images + texts per second)", {"job_id"})),
      eval_tasks_total_(r.counter("refinery_eval_tasks_total", "Evaluation tasks finished, by kind (zeroshot, retrieval)", {"kind"})),
      eval_images_total_(r.counter("refinery_eval_images_total", "Images evaluated by finished evaluation tasks")),
      finished_total_(r.counter("refinery_jobs_finished_total", "Jobs that ended, by final state", {"state"})),
      sweeps_(r.gauge("refinery_sweeps", "Sweeps by state: running (a job not ended) or finished", {"state"})),
      sweep_jobs_(r.gauge("refinery_sweep_jobs", "The jobs of each running sweep, by state", {"state", "sweep_id"})) {
  for (const char* state : {"SUCCEEDED", "FAILED", "CANCELLED"}) finished_total_.with({state});  // 0 from the start
}

void JobMetrics::record_job_finished(const std::string& state) { finished_total_.with({state}).Increment(); }

void JobMetrics::set_jobs_by_state(const std::map<std::string, int>& counts) {
  for (const auto& [state, n] : counts) jobs_.with({state}).Set(n);
}

void JobMetrics::record_step(const std::string& job, const StepReport& s) {
  step_.with({job}).Set(static_cast<double>(s.step));
  total_steps_.with({job}).Set(static_cast<double>(s.total_steps));
  const std::pair<const char*, double> terms[] = {{"total", s.loss},
                                                  {"rafa", s.loss_rafa},
                                                  {"hycd", s.loss_hycd},
                                                  {"contrastive", s.loss_contrastive},
                                                  {"align", s.loss_align}};
  for (const auto& [term, v] : terms) {
    if (std::isfinite(v)) loss_.with({job, term}).Set(v);
  }
  lr_.with({job}).Set(s.lr);
  samples_per_second_.with({job}).Set(s.samples_per_second);
  data_seconds_.with({job}).Set(s.data_seconds);
  steps_total_.with().Increment();
  samples_total_.with().Increment(static_cast<double>(s.batch_rows));
}

void JobMetrics::record_eval(const std::string& job, const std::map<std::string, double>& metrics) {
  for (const auto& [name, v] : metrics) {
    if (std::isfinite(v)) eval_.with({job, name}).Set(v);
  }
}

void JobMetrics::record_images_skipped(int64_t n) { images_skipped_.with().Increment(static_cast<double>(n)); }

void JobMetrics::record_eval_progress(const std::string& job, int64_t done, int64_t total, double items_per_second) {
  eval_progress_.with({job}).Set(total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0);
  eval_items_per_second_.with({job}).Set(items_per_second);
}

void JobMetrics::record_eval_task(const std::string& kind, int64_t images) {
  eval_tasks_total_.with({kind}).Increment();
  eval_images_total_.with().Increment(static_cast<double>(images));
}

void JobMetrics::job_ended(const std::string& job) {
  for (GaugeFamily* f : {&step_, &total_steps_, &lr_, &samples_per_second_, &data_seconds_, &eval_progress_,
                         &eval_items_per_second_}) {
    f->remove({job});
  }
  for (const char* term : {"total", "rafa", "hycd", "contrastive", "align"}) loss_.remove({job, term});
}

namespace {
constexpr const char* kJobStates[] = {"QUEUED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"};
}

void JobMetrics::set_sweeps(const std::vector<SweepJobStates>& sweeps) {
  std::lock_guard<std::mutex> lock(sweeps_mu_);
  int running = 0;
  std::set<std::string> shown;
  for (const SweepJobStates& sweep : sweeps) {
    auto count = [&sweep](const char* state) {
      const auto it = sweep.jobs.find(state);
      return it == sweep.jobs.end() ? 0 : it->second;
    };
    if (count("QUEUED") + count("RUNNING") + count("CANCELLING") == 0) continue;
    ++running;
    shown.insert(sweep.sweep_id);
    for (const char* state : kJobStates) sweep_jobs_.with({state, sweep.sweep_id}).Set(count(state));
  }
  for (const std::string& id : running_sweeps_shown_) {
    if (shown.count(id) > 0) continue;
    for (const char* state : kJobStates) sweep_jobs_.remove({state, id});
  }
  running_sweeps_shown_ = std::move(shown);
  sweeps_.with({"running"}).Set(running);
  sweeps_.with({"finished"}).Set(static_cast<double>(sweeps.size()) - running);
}

}  // namespace refinery
