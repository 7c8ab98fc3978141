// `refinery jobs submit|watch|list|show|cancel|resume|delete`: refine jobs on the
// server's JobService. Every JobSpec field is a submit flag named after it;
// only the flags given are sent, so the server applies METHOD.md's defaults
// to the rest. A watch survives server restarts: it reconnects from the last
// event it printed, so no event is lost or printed twice.
#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "client/client_errors.h"
#include "client/commands.h"
#include "client/eval_display.h"
#include "client/input_files.h"
#include "client/job_calls.h"
#include "client/job_display.h"
#include "client/job_plots.h"
#include "client/output.h"
#include "client/server_connection.h"
#include "core/base/error.h"
#include "core/base/progress_bar.h"
#include "refinery/job_spec_flags.h"
#include "refinery/v1/job.grpc.pb.h"

namespace refinery::client {
namespace {

using google::protobuf::FieldDescriptor;

struct SubmitParams {
  JobSpecFlags spec_flags;
  std::string request_id;
  bool watch = false;
  double reconnect_timeout_s = kDefaultReconnectTimeoutS;
};

struct WatchParams {
  std::string id;
  int64_t from_seq = 0;
  double reconnect_timeout_s = kDefaultReconnectTimeoutS;
};

// The spec of `jobs submit`: --file first, then the flags over it.
v1::JobSpec build_spec(const SubmitParams& p) {
  v1::JobSpec spec;
  try {
    spec = p.spec_flags.spec();
  } catch (const JobSpecFlagError& e) {
    throw UsageError(e.what());
  }
  if (spec.base_model().empty() && spec.init() != "random") {
    throw UsageError("jobs submit: give --base MODEL (or \"base_model\" in --file), or --init random --arch ARCH");
  }
  if (spec.data().empty()) throw UsageError("jobs submit: give --data SPEC (or \"data\" in --file)");
  return spec;
}

int submit_job(const ServerConnection& c, const SubmitParams& p) {
  const v1::Job job = submit_job_spec(c, build_spec(p), p.request_id);
  if (c.options().json) {
    print_json(job_to_json(job));
    std::cout.flush();
  } else {
    std::cout << "job " << job.id() << " " << job_state_name(job.state()) << std::endl;
  }
  if (!p.watch) return 0;
  return watch_to_end(c, job.id(), 0, p.reconnect_timeout_s);
}

int watch_job(const ServerConnection& c, const WatchParams& p) {
  // First a plain call: a wrong id or server fails here, at once, instead
  // of being retried as a broken stream.
  v1::Job job;
  check_job_status(get_job(c.channel(), c.options().timeout_s, p.id, &job));
  return watch_to_end(c, p.id, p.from_seq, p.reconnect_timeout_s);
}

std::string steps_of(const v1::Job& job) {
  return std::to_string(job.step()) + "/" + (job.total_steps() > 0 ? std::to_string(job.total_steps()) : "?");
}

bool is_eval(const v1::JobSpec& spec) { return spec.kind() == v1::JOB_KIND_EVAL; }

// What the job does: "eval", or the refine method (with "+eval" when it
// evaluates before and after).
std::string method_of(const v1::JobSpec& spec) {
  if (is_eval(spec)) return "eval";
  return (spec.method().empty() ? "clip-refine" : spec.method()) + (spec.eval_suite().empty() ? "" : "+eval");
}

int list_jobs(const ServerConnection& c, const std::vector<std::string>& states) {
  v1::ListJobsRequest request;
  for (const auto& s : states) request.add_states(parse_job_state(s, "--state"));
  v1::ListJobsResponse response;
  check_job_status(v1::JobService::NewStub(c.channel())->ListJobs(c.context().get(), request, &response));
  if (c.options().json) {
    auto list = nlohmann::ordered_json::array();
    for (const auto& job : response.jobs()) list.push_back(job_to_json(job));
    print_json(list);
    return 0;
  }
  if (response.jobs().empty()) {
    std::cout << (states.empty() ? "no jobs (submit one with `refinery jobs submit --base MODEL --data SPEC`)\n"
                                 : "no jobs in those states\n");
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& job : response.jobs()) {
    rows.push_back({job.id(), job_state_name(job.state()), steps_of(job), method_of(job.spec()),
                    is_eval(job.spec())                  ? job.spec().model()
                    : job.spec().init() == "random" ? "random:" + job.spec().arch()
                                                    : job.spec().base_model(),
                    format_local_time(job.created_unix_ms()), job.result_model().empty() ? "-" : job.result_model()});
  }
  // STEP of an eval job counts items (images + texts) embedded.
  print_table({"ID", "STATE", "STEP", "METHOD", "BASE", "CREATED", "MODEL"}, rows);
  return 0;
}

// One spec field for `jobs show`: its value, or "(default)" where the server
// takes its default (an unset optional field, or an empty string). The
// server stores specs with the defaults filled in, so this is rare.
std::string describe_field(const v1::JobSpec& spec, const FieldDescriptor* f) {
  const auto* r = spec.GetReflection();
  const bool unset = f->has_presence() ? !r->HasField(spec, f)
                                       : f->cpp_type() == FieldDescriptor::CPPTYPE_STRING && r->GetString(spec, f).empty();
  if (unset) return "(default)";
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return std::to_string(r->GetInt32(spec, f));
    case FieldDescriptor::CPPTYPE_INT64: return std::to_string(r->GetInt64(spec, f));
    case FieldDescriptor::CPPTYPE_UINT32: return std::to_string(r->GetUInt32(spec, f));
    case FieldDescriptor::CPPTYPE_UINT64: return std::to_string(r->GetUInt64(spec, f));
    case FieldDescriptor::CPPTYPE_DOUBLE: return nlohmann::json(r->GetDouble(spec, f)).dump();
    case FieldDescriptor::CPPTYPE_FLOAT: return nlohmann::json(r->GetFloat(spec, f)).dump();
    case FieldDescriptor::CPPTYPE_BOOL: return r->GetBool(spec, f) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_STRING: return r->GetString(spec, f);
    case FieldDescriptor::CPPTYPE_ENUM: return r->GetEnum(spec, f)->name();
    default: return "?";
  }
}

void print_job(const v1::Job& job) {
  std::cout << "job " << job.id() << " " << job_state_name(job.state()) << '\n';
  if (is_eval(job.spec())) {
    std::cout << "  evaluates:   " << job.spec().model() << '\n'
              << "  items:       " << steps_of(job) << " (images + texts embedded)\n";
  } else {
    std::cout << "  step:        " << steps_of(job) << ", epoch " << job.epoch() << '\n';
  }
  std::cout
            << "  created:     " << format_local_time(job.created_unix_ms()) << '\n'
            << "  started:     " << format_local_time(job.started_unix_ms()) << '\n'
            << "  finished:    " << format_local_time(job.finished_unix_ms()) << '\n';
  if (job.started_unix_ms() > 0 && job.finished_unix_ms() > 0) {
    std::cout << "  took:        " << clock_duration((job.finished_unix_ms() - job.started_unix_ms()) / 1000.0)
              << '\n';
  }
  std::cout << "  model:       " << (job.result_model().empty() ? "-" : job.result_model()) << '\n';
  if (!job.error().empty()) std::cout << "  error:       " << job.error() << '\n';
  std::cout << "  last event:  " << job.last_seq() << '\n'
            << "  request id:  " << (job.client_request_id().empty() ? "-" : job.client_request_id()) << '\n'
            << "  spec:\n";
  const auto& spec = job.spec();
  const auto* d = v1::JobSpec::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_map() || f->is_repeated() || f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) continue;
    std::string label = f->name() + ":";
    label.resize(std::max<size_t>(label.size() + 1, 18), ' ');
    std::cout << "    " << label << describe_field(spec, f) << '\n';
  }
  const std::map<std::string, std::string> extra(spec.extra().begin(), spec.extra().end());
  for (const auto& [k, v] : extra) std::cout << "    extra." << k << " = " << v << '\n';
  const std::map<std::string, double> metrics(job.metrics().begin(), job.metrics().end());
  if (!metrics.empty()) {
    std::cout << "  metrics:\n";
    for (const auto& [k, v] : metrics) std::cout << "    " << k << " = " << v << '\n';
  }
  if (job.has_base_eval_report() && job.has_eval_report()) {
    std::cout << "  evaluation:\n";
    print_eval_comparison(job.base_eval_report(), job.eval_report(), "base " + job.base_eval_report().model(),
                          "refined " + job.eval_report().model(), "  ");
  } else if (job.has_eval_report()) {
    std::cout << "  evaluation:\n";
    print_eval_report(job.eval_report(), "    ");
  } else if (job.has_base_eval_report()) {
    std::cout << "  evaluation of the base, before refining:\n";
    print_eval_report(job.base_eval_report(), "    ");
  }
  for (const auto& r : job.epoch_results()) {
    std::cout << "  epoch " << r.epoch() << " (step " << r.step() << "): model " << r.model() << '\n';
    if (r.has_eval_report() && job.has_base_eval_report()) {
      print_eval_comparison(job.base_eval_report(), r.eval_report(), "base " + job.base_eval_report().model(),
                            "epoch " + std::to_string(r.epoch()) + " " + r.model(), "  ");
    } else if (r.has_eval_report()) {
      print_eval_report(r.eval_report(), "    ");
    }
  }
}

int show_job(const ServerConnection& c, const std::string& id) {
  v1::Job job;
  check_job_status(get_job(c.channel(), c.options().timeout_s, id, &job));
  if (c.options().json) {
    print_json(job_to_json(job));
  } else {
    print_job(job);
  }
  return 0;
}

int resume_job(const ServerConnection& c, const std::string& id) {
  v1::ResumeJobRequest request;
  request.set_id(id);
  v1::Job job;
  check_job_status(v1::JobService::NewStub(c.channel())->ResumeJob(c.context().get(), request, &job));
  if (c.options().json) {
    print_json(job_to_json(job));
  } else {
    std::cout << "job " << job.id() << " " << job_state_name(job.state()) << '\n';
  }
  return 0;
}

int cancel_job(const ServerConnection& c, const std::string& id) {
  v1::CancelJobRequest request;
  request.set_id(id);
  v1::Job job;
  check_job_status(v1::JobService::NewStub(c.channel())->CancelJob(c.context().get(), request, &job));
  if (c.options().json) {
    print_json(job_to_json(job));
  } else {
    std::cout << "job " << job.id() << " " << job_state_name(job.state()) << '\n';
  }
  return 0;
}

int delete_job(const ServerConnection& c, const std::string& id) {
  v1::DeleteJobRequest request;
  request.set_id(id);
  v1::DeleteJobResponse response;
  check_job_status(v1::JobService::NewStub(c.channel())->DeleteJob(c.context().get(), request, &response));
  if (c.options().json) {
    print_json({{"deleted", id}});
  } else {
    std::cout << "deleted job " << id << '\n';
  }
  return 0;
}

void add_reconnect_option(CLI::App* sub, double& seconds) {
  sub->add_option("--reconnect-timeout", seconds,
                  "While the server is unreachable, keep reconnecting this many seconds (0: give up at once)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

void add_submit_command(CLI::App* jobs, Command& command) {
  auto* submit = jobs->add_subcommand(
      "submit", "Submit a refine job; training flags left out take METHOD.md's defaults on the server");
  auto p = std::make_shared<SubmitParams>();
  p->spec_flags.add_to(submit, "Training (unset: METHOD.md defaults)");
  submit->add_option("--request-id", p->request_id,
                     "Idempotency key: submitting the same id again returns the first job (default: random)");
  submit->add_flag("--watch", p->watch, "Then follow its progress until it ends, as `jobs watch` does");
  add_reconnect_option(submit, p->reconnect_timeout_s);

  submit->callback([&command, p] {
    command.run = [&command, p] { return submit_job(ServerConnection(command.options), *p); };
  });
}

}  // namespace

void add_job_commands(CLI::App& app, Command& command) {
  auto* jobs = app.add_subcommand("jobs", "Refine jobs: CLIP-Refine post-pre-training runs on the server");
  jobs->require_subcommand(1);

  add_submit_command(jobs, command);

  auto* watch = jobs->add_subcommand(
      "watch", "Follow a job's progress until it ends (exit 0 if it SUCCEEDED, 1 if it FAILED or was CANCELLED)");
  auto wp = std::make_shared<WatchParams>();
  watch->add_option("id", wp->id, "Job id")->required();
  watch->add_option("--from", wp->from_seq, "First event to show, by sequence number (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_reconnect_option(watch, wp->reconnect_timeout_s);
  watch->callback([&command, wp] {
    command.run = [&command, wp] { return watch_job(ServerConnection(command.options), *wp); };
  });

  auto* list = jobs->add_subcommand("list", "Jobs on the server (all, or those in --state)");
  auto states = std::make_shared<std::vector<std::string>>();
  list->add_option("--state", *states,
                   "Only jobs in this state (repeatable, or a,b): QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED, "
                   "CANCELLED")
      ->delimiter(',');
  list->callback([&command, states] {
    command.run = [&command, states] { return list_jobs(ServerConnection(command.options), *states); };
  });

  auto* show = jobs->add_subcommand("show", "One job: state, progress, spec, metrics, result or error");
  auto show_id = std::make_shared<std::string>();
  show->add_option("id", *show_id, "Job id")->required();
  show->callback([&command, show_id] {
    command.run = [&command, show_id] { return show_job(ServerConnection(command.options), *show_id); };
  });

  auto* cancel = jobs->add_subcommand("cancel", "Cancel a queued or running job (CANCELLING, then CANCELLED)");
  auto cancel_id = std::make_shared<std::string>();
  cancel->add_option("id", *cancel_id, "Job id")->required();
  cancel->callback([&command, cancel_id] {
    command.run = [&command, cancel_id] { return cancel_job(ServerConnection(command.options), *cancel_id); };
  });

  auto* resume = jobs->add_subcommand("resume", "Queue a CANCELLED or FAILED job again; it continues from its last checkpoint");
  auto resume_id = std::make_shared<std::string>();
  resume->add_option("id", *resume_id, "Job id")->required();
  resume->callback([&command, resume_id] {
    command.run = [&command, resume_id] { return resume_job(ServerConnection(command.options), *resume_id); };
  });

  add_job_plot_command(jobs, command);

  auto* del = jobs->add_subcommand("delete", "Delete a finished job (SUCCEEDED, FAILED or CANCELLED)");
  auto delete_id = std::make_shared<std::string>();
  del->add_option("id", *delete_id, "Job id")->required();
  del->callback([&command, delete_id] {
    command.run = [&command, delete_id] { return delete_job(ServerConnection(command.options), *delete_id); };
  });
}

}  // namespace refinery::client
