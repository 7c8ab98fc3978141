// metrics_dump: a registry holding every metric type and the awkward values
// (escaped label values, special floats, process metrics), printed for
// `promtool check metrics` or served for a real Prometheus to scrape.
//
//   metrics_dump --print               exposition on stdout
//   metrics_dump --serve HOST:PORT     serve /metrics; prints the bound port as
//                                      the first stdout line; runs until
//                                      SIGTERM or SIGINT
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <string>

#include "core/base/error.h"
#include "core/refine/refine_trainer.h"
#include "server/jobs/job_metrics.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/metrics_registry.h"
#include "server/metrics/process_metrics.h"

namespace {

constexpr const char* kUsage =
    "usage: metrics_dump --print\n"
    "       metrics_dump --serve HOST:PORT   (PORT 0 picks a free port; prints it first)\n";

void fill(refinery::MetricsRegistry& registry) {
  using namespace refinery;
  auto& requests = registry.counter("refinery_dump_requests_total", "Requests handled, by RPC and status code.",
                                    {"method", "code"});
  requests.with({"EmbedText", "OK"}).Increment(1234567);
  requests.with({"EmbedImage", "INVALID_ARGUMENT"}).Increment(3);
  requests.with({"Classify", "OK"});  // a child that exists but is still 0

  auto& tricky = registry.gauge("refinery_dump_label_escaping",
                                "Label values that need escaping: \\ and \"quotes\"\nsecond line.", {"value"});
  tricky.with({"double \"quoted\""}).Set(1);
  tricky.with({"back\\slash"}).Set(2);
  tricky.with({"new\nline"}).Set(3);
  tricky.with({"all \\\"\n at once \\n"}).Set(4);
  tricky.with({"unicode caf\xC3\xA9 \xE6\xA8\xA1\xE5\x9E\x8B"}).Set(5);
  tricky.with({"invalid utf-8 \xFF"}).Set(6);
  tricky.with({""}).Set(7);

  auto& special = registry.gauge("refinery_dump_special_values", "Floats Prometheus spells specially.", {"kind"});
  special.with({"nan"}).Set(std::numeric_limits<double>::quiet_NaN());
  special.with({"pos_inf"}).Set(std::numeric_limits<double>::infinity());
  special.with({"neg_inf"}).Set(-std::numeric_limits<double>::infinity());
  special.with({"tiny"}).Set(1e-9);
  special.with({"huge"}).Set(1.5e300);
  special.with({"negative"}).Set(-2.5);
  special.with({"big_integer"}).Set(4503599627370496.0);

  registry.gauge("refinery_dump_models_loaded", "Models currently loaded.").with().Set(2);

  auto& latency = registry.histogram("refinery_dump_request_duration_seconds", "Request latency in seconds.",
                                     latency_buckets_seconds(), {"method"});
  for (double v : {0.0004, 0.0005, 0.003, 0.02, 0.02, 0.7, 12.0, 45.0}) latency.with({"EmbedText"}).Observe(v);
  latency.with({"Classify"}).Observe(0.1);

  auto& batch = registry.histogram("refinery_dump_batch_size", "Items per inference batch.", size_buckets());
  for (double v : {1, 1, 3, 8, 32, 700}) batch.with().Observe(v);

  // Values filled at scrape time, as refineryd does for queue depths.
  auto& scrapes = registry.counter("refinery_dump_scrapes_total", "Times this registry was serialised.").with();
  registry.add_collector([&scrapes] { scrapes.Increment(); });

  register_process_metrics(registry);
  // Refine-job metrics as refineryd exposes them while a job runs.
  JobMetrics jobs(registry);
  jobs.set_jobs_by_state({{"QUEUED", 1}, {"RUNNING", 1}, {"SUCCEEDED", 3}, {"FAILED", 0}});
  StepReport step;
  step.step = 12;
  step.total_steps = 231;
  step.loss = 2.5;
  step.loss_rafa = 2.0;
  step.loss_hycd = 0.5;
  step.loss_contrastive = std::numeric_limits<double>::quiet_NaN();  // unused by the method: not exported
  step.lr = 1e-6;
  step.samples_per_second = 1.7;
  step.data_seconds = 0.01;
  step.batch_rows = 32;
  jobs.record_step("job-0123456789ab", step);
  jobs.record_eval("job-0123456789ab", {{"modality_gap", 0.00133}, {"t2i_r1", 0.306}});
  jobs.record_images_skipped(2);
  // An evaluation as it runs, and the tasks finished so far.
  jobs.record_eval_progress("job-00000000eva1", 1200, 4000, 35.5);
  jobs.record_eval_task("zeroshot", 1000);
  jobs.record_eval_task("retrieval", 5000);
}

int serve(const refinery::MetricsRegistry& registry, const std::string& listen) {
  // Block the stop signals before the HTTP server starts its threads (they inherit
  // the mask), so sigwait below is the only place that receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  refinery::MetricsHttpServer server(registry, listen);
  std::cout << server.port() << std::endl;  // first line: the bound port, flushed
  std::cerr << "metrics_dump: serving http://" << listen.substr(0, listen.rfind(':')) << ":" << server.port()
            << "/metrics until SIGTERM or SIGINT\n";
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "metrics_dump: " << strsignal(signal_number) << ", stopping\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--help" || mode == "-h") {
    std::cout << kUsage;
    return 0;
  }
  const bool print = mode == "--print" && argc == 2;
  const bool serving = mode == "--serve" && argc == 3;
  if (!print && !serving) {
    std::cerr << kUsage;
    return 2;
  }
  try {
    refinery::MetricsRegistry registry;
    fill(registry);
    if (print) {
      std::cout << registry.serialize();
      return std::cout.flush() ? 0 : 1;
    }
    return serve(registry, argv[2]);
  } catch (const std::exception& e) {
    std::cerr << "metrics_dump: " << e.what() << "\n";
    return 1;
  }
}
