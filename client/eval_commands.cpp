// `refinery eval submit|compare`: evaluation jobs on the server's JobService.
// A suite is sent as JSON (a --suite file, or one task built from flags)
// with its data paths on the server's disk; the server checks every file at
// submit. Reports land in the job and in the model's lineage (latest per
// suite), where `compare` finds them, running an evaluation for a model that
// has none.
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "client/client_errors.h"
#include "client/commands.h"
#include "client/eval_display.h"
#include "client/input_files.h"
#include "client/job_calls.h"
#include "client/job_display.h"
#include "client/output.h"
#include "refinery/proto_json.h"
#include "client/server_connection.h"
#include "core/base/error.h"
#include "refinery/v1/model.grpc.pb.h"

namespace refinery::client {
namespace {

using nlohmann::json;

// One task from flags, as `refinery-model eval --task` takes them.
struct TaskFlags {
  std::string task, data, name, dataset, classnames, prompt, templates;
  std::vector<std::string> classes;
};

struct EvalSubmitParams {
  std::string model, suite, request_id;
  TaskFlags task;
  bool watch = false;
  double reconnect_timeout_s = kDefaultReconnectTimeoutS;
};

struct CompareParams {
  std::string model_a, model_b, suite;
  bool rerun = false;
  double reconnect_timeout_s = kDefaultReconnectTimeoutS;
};

// The suite to send: the --suite file, or one task from the flags.
json suite_from_flags(const std::string& suite_file, const TaskFlags& t) {
  const bool task_given = !t.task.empty() || !t.data.empty();
  if (!suite_file.empty()) {
    if (task_given) throw UsageError("eval: give --suite FILE or --task/--data, not both");
    json suite = read_json_file(suite_file);
    if (!suite.is_object()) throw invalid_argument(suite_file + ": a suite is a JSON object {\"name\", \"tasks\": [...]}");
    return suite;
  }
  if (t.task.empty() || t.data.empty()) {
    throw UsageError("eval: give --suite FILE, or --task zeroshot|retrieval with --data SPEC");
  }
  json task = {{"name", t.name.empty() ? t.task : t.name}, {"kind", t.task}, {"data", t.data}};
  if (!t.dataset.empty()) task["dataset"] = t.dataset;
  if (!t.classnames.empty()) task["classnames"] = t.classnames;
  if (!t.classes.empty()) task["classes"] = t.classes;
  if (!t.prompt.empty()) task["prompt"] = t.prompt;
  if (!t.templates.empty()) task["templates"] = t.templates;
  return {{"name", t.name.empty() ? t.task : t.name}, {"tasks", json::array({task})}};
}

std::string suite_name(const json& suite) {
  const auto it = suite.find("name");
  return it != suite.end() && it->is_string() ? it->get<std::string>() : "default";
}

v1::JobSpec eval_spec(const std::string& model, const json& suite) {
  v1::JobSpec spec;
  spec.set_kind(v1::JOB_KIND_EVAL);
  spec.set_model(model);
  spec.set_eval_suite(suite.dump());
  return spec;
}

// Follows an eval job to its end; its report, or an error carrying the job's.
v1::EvalReport report_of_finished(const ServerConnection& c, const std::string& id, double reconnect_timeout_s,
                                  JobProgress& progress) {
  const v1::Job job = follow_job(c, id, 0, reconnect_timeout_s, progress);
  progress.finish();
  if (job.state() != v1::JOB_STATE_SUCCEEDED) {
    throw failed_precondition("eval job " + job.id() + " " + job_state_name(job.state()) +
                              (job.error().empty() ? "" : ": " + job.error()));
  }
  return job.eval_report();
}

int submit_eval(const ServerConnection& c, const EvalSubmitParams& p) {
  const json suite = suite_from_flags(p.suite, p.task);
  const v1::Job job = submit_job_spec(c, eval_spec(p.model, suite), p.request_id);
  if (c.options().json) {
    print_json(job_to_json(job));
    std::cout.flush();
  } else {
    std::cout << "job " << job.id() << " " << job_state_name(job.state()) << ": evaluates " << job.spec().model()
              << " over suite '" << suite_name(suite) << "'" << std::endl;
  }
  if (!p.watch) return 0;
  JobProgress progress(JobProgress::style_for(c.options().json));
  const v1::EvalReport report = report_of_finished(c, job.id(), p.reconnect_timeout_s, progress);
  if (c.options().json) {
    print_json(proto_to_json(report));
  } else {
    print_eval_report(report);
  }
  return 0;
}

v1::ModelInfo get_model(const ServerConnection& c, const std::string& ref) {
  v1::GetModelRequest request;
  request.set_model(ref);
  v1::ModelInfo info;
  check_status(v1::ModelService::NewStub(c.channel())->GetModel(c.context().get(), request, &info), "model " + ref);
  return info;
}

std::map<std::string, v1::EvalReport> reports_of(const v1::ModelInfo& m) {
  std::map<std::string, v1::EvalReport> out;
  for (const auto& r : m.lineage().evaluations()) out[r.suite()] = r;
  return out;
}

std::string suite_list(const std::map<std::string, v1::EvalReport>& reports) {
  std::string out;
  for (const auto& [name, r] : reports) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none" : out;
}

int compare_models(const ServerConnection& c, const CompareParams& p) {
  const v1::ModelInfo a = get_model(c, p.model_a);
  const v1::ModelInfo b = get_model(c, p.model_b);
  if (a.ref() == b.ref()) throw UsageError("eval compare: " + p.model_a + " and " + p.model_b + " are both " + a.ref());
  std::map<std::string, v1::EvalReport> ra = reports_of(a), rb = reports_of(b);
  std::vector<std::string> suites;
  if (!p.suite.empty()) {
    const json suite = suite_from_flags(p.suite, {});
    const std::string name = suite_name(suite);
    suites.push_back(name);
    // Run what is missing: both jobs are queued first, then followed.
    std::vector<std::pair<std::string, std::map<std::string, v1::EvalReport>*>> jobs;
    for (auto [info, reports] : {std::pair{&a, &ra}, std::pair{&b, &rb}}) {
      if (!p.rerun && reports->count(name)) continue;
      const v1::Job job = submit_job_spec(c, eval_spec(info->ref(), suite), "");
      if (!c.options().json) {
        std::cout << "job " << job.id() << ": evaluating " << info->ref() << " over suite '" << name << "'"
                  << std::endl;
      }
      jobs.emplace_back(job.id(), reports);
    }
    for (const auto& [id, reports] : jobs) {
      JobProgress progress(c.options().json ? JobProgress::Style::kQuiet : JobProgress::style_for(false));
      (*reports)[name] = report_of_finished(c, id, p.reconnect_timeout_s, progress);
    }
  } else {
    for (const auto& [name, r] : ra) {
      if (rb.count(name)) suites.push_back(name);
    }
    if (suites.empty()) {
      throw failed_precondition("no suite has been evaluated on both models (" + a.ref() + ": " + suite_list(ra) +
                                "; " + b.ref() + ": " + suite_list(rb) +
                                "); give --suite FILE to evaluate what is missing");
    }
  }
  if (c.options().json) {
    auto list = nlohmann::ordered_json::array();
    for (const auto& s : suites) list.push_back(compare_eval_reports(ra.at(s), rb.at(s)));
    print_json({{"a", a.ref()}, {"b", b.ref()}, {"suites", list}});
    return 0;
  }
  for (size_t i = 0; i < suites.size(); ++i) {
    if (i > 0) std::cout << '\n';
    print_eval_comparison(ra.at(suites[i]), rb.at(suites[i]), a.ref(), b.ref());
  }
  return 0;
}

void add_task_flags(CLI::App* cmd, TaskFlags& t) {
  const std::string group = "One task instead of --suite (paths on the server's disk)";
  cmd->add_option("--task", t.task, "zeroshot or retrieval")->check(CLI::IsMember({"zeroshot", "retrieval"}))->group(group);
  cmd->add_option("--data", t.data,
                  "zeroshot: folder:DIR (a sub-folder per class) or csv:FILE (filepath,label); retrieval: "
                  "coco:ANN.json:IMAGES, csv:FILE or jsonl:FILE")
      ->group(group);
  cmd->add_option("--name", t.name, "Task and suite name (default: the task kind)")->group(group);
  cmd->add_option("--dataset", t.dataset, "Class names by id from this data set of zeroshot_prompts.json")->group(group);
  cmd->add_option("--classnames", t.classnames, "Class names file: JSON {key: name}, a JSON array, or a name a line")
      ->group(group);
  cmd->add_option("--classes", t.classes, "Only these classes, by id or name (a,b,c)")->delimiter(',')->group(group);
  cmd->add_option("--prompt", t.prompt, "One prompt template, {} marks the class name (default \"a photo of {}\")")
      ->group(group);
  cmd->add_option("--templates", t.templates, "A template ensemble: a JSON file or a data set name (e.g. ImageNet)")
      ->group(group);
}

}  // namespace

void add_eval_commands(CLI::App& app, Command& command) {
  auto* eval = app.add_subcommand("eval", "Evaluation jobs: zero-shot classification and retrieval of a model");
  eval->require_subcommand(1);

  auto* submit = eval->add_subcommand("submit", "Evaluate a model over a suite (or one task) on the server");
  auto sp = std::make_shared<EvalSubmitParams>();
  submit->add_option("--model", sp->model, "NAME or NAME@VERSION (default: the server's default model)");
  submit->add_option("--suite", sp->suite, "Suite file: {\"name\", \"tasks\": [...]} (README: evaluation suites)");
  add_task_flags(submit, sp->task);
  submit->add_option("--request-id", sp->request_id,
                     "Idempotency key: submitting the same id again returns the first job (default: random)");
  submit->add_flag("--watch", sp->watch, "Follow its progress, then print the report");
  submit->add_option("--reconnect-timeout", sp->reconnect_timeout_s,
                     "While the server is unreachable, keep reconnecting this many seconds (0: give up at once)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  submit->callback([&command, sp] {
    command.run = [&command, sp] { return submit_eval(ServerConnection(command.options), *sp); };
  });

  auto* compare = eval->add_subcommand(
      "compare", "Two models side by side with deltas, per task and suite; evaluates what is missing given --suite");
  auto cp = std::make_shared<CompareParams>();
  compare->add_option("model_a", cp->model_a, "First model (the baseline): NAME or NAME@VERSION")->required();
  compare->add_option("model_b", cp->model_b, "Second model, set against the first")->required();
  compare->add_option("--suite", cp->suite,
                      "Suite file: compare on it, evaluating a model that has no report of it yet (default: every "
                      "suite both have been evaluated on)");
  compare->add_flag("--rerun", cp->rerun, "With --suite: evaluate both again even if they have reports");
  compare->add_option("--reconnect-timeout", cp->reconnect_timeout_s,
                      "While the server is unreachable, keep reconnecting this many seconds")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  compare->callback([&command, cp] {
    if (cp->rerun && cp->suite.empty()) throw CLI::ValidationError("--rerun", "needs --suite FILE");
    command.run = [&command, cp] { return compare_models(ServerConnection(command.options), *cp); };
  });
}

}  // namespace refinery::client
