// Prometheus metrics of jobs: jobs by state and jobs finished by state; for a running refine job its
// step, losses, learning rate, throughput and data-loading time; for a
// running evaluation its progress and throughput; sweeps by state and the
// jobs of each running sweep by state. The per-job label is `job_id`: `job`
// is the one Prometheus gives the target.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>
#include "server/metrics/metrics_registry.h"

namespace refinery {

struct StepReport;

// A sweep's jobs (each job once, however many points it serves) by state.
struct SweepJobStates {
  std::string sweep_id;
  std::map<std::string, int> jobs;  // QUEUED, RUNNING, ... -> count
};

class JobMetrics {
 public:
  explicit JobMetrics(MetricsRegistry& registry);
  void set_jobs_by_state(const std::map<std::string, int>& counts);  // every state, 0s included
  void record_job_finished(const std::string& state);               // SUCCEEDED, FAILED or CANCELLED
  void record_step(const std::string& job_id, const StepReport& step);
  void record_eval(const std::string& job_id, const std::map<std::string, double>& metrics);
  void record_images_skipped(int64_t n);
  // Evaluations (eval jobs, and refine jobs' suites): progress of the
  // running one, and tasks and images evaluated by all.
  void record_eval_progress(const std::string& job_id, int64_t done, int64_t total, double items_per_second);
  void record_eval_task(const std::string& kind, int64_t images);
  void job_ended(const std::string& job_id);  // drops its per-job series
  // Every sweep: a sweep runs while one of its jobs is QUEUED, RUNNING or
  // CANCELLING. Only running sweeps keep per-sweep series.
  void set_sweeps(const std::vector<SweepJobStates>& sweeps);

 private:
  GaugeFamily& jobs_;
  GaugeFamily& step_;
  GaugeFamily& total_steps_;
  GaugeFamily& loss_;
  GaugeFamily& lr_;
  GaugeFamily& samples_per_second_;
  GaugeFamily& data_seconds_;
  GaugeFamily& eval_;
  CounterFamily& steps_total_;
  CounterFamily& samples_total_;
  CounterFamily& images_skipped_;
  GaugeFamily& eval_progress_;
  GaugeFamily& eval_items_per_second_;
  CounterFamily& eval_tasks_total_;
  CounterFamily& eval_images_total_;
  CounterFamily& finished_total_;
  GaugeFamily& sweeps_;
  GaugeFamily& sweep_jobs_;
  std::mutex sweeps_mu_;  // set_sweeps is called from the job threads and the RPCs
  std::set<std::string> running_sweeps_shown_;
};

}  // namespace refinery
