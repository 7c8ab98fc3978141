// Prometheus metrics of jobs: jobs by state and jobs finished by state; for a running refine job its
// step, losses, learning rate, throughput and data-loading time; for a
// running evaluation its progress and throughput. The
// per-job label is `job_id`: `job` is the one Prometheus gives the target.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include "server/metrics/metrics_registry.h"

namespace refinery {

struct StepReport;

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
};

}  // namespace refinery
