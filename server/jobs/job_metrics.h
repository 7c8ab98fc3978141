// Prometheus metrics of refine jobs: jobs by state, and for the running job
// its step, losses, learning rate, throughput and data-loading time. The
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
  void record_step(const std::string& job_id, const StepReport& step);
  void record_eval(const std::string& job_id, const std::map<std::string, double>& metrics);
  void record_images_skipped(int64_t n);
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
};

}  // namespace refinery
