// `refinery sweep submit|watch|show|list|cancel|plot`: grids of refine jobs
// (JobService sweeps). A sweep's result table has a row per grid point with
// its job, model and metrics: the summary of the point's evaluation report
// when the sweep names a suite (and the modality gap averaged over its
// retrieval tasks), else the job's last validation metrics. `plot` draws a
// heatmap per metric for a two-axis grid and metric-against-value lines for
// a one-axis grid.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <filesystem>
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
#include "core/plot/charts.h"

namespace refinery::client {
namespace {

using nlohmann::ordered_json;

struct SweepSubmitParams {
  std::string base, data, eval_suite, name, model_name, request_id;
  std::vector<std::string> grid, set;
  bool watch = false;
  double reconnect_timeout_s = kDefaultReconnectTimeoutS;
};

struct SweepPlotParams {
  std::string id, output, format = "png";
};

// FIELD=V1,V2,... ; FIELD=VALUE for --set.
std::pair<std::string, std::string> split_assignment(const std::string& arg, const std::string& flag) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size()) {
    throw UsageError(flag + " expects FIELD=" + (flag == "--grid" ? "V1,V2,..." : "VALUE") + ", got '" + arg + "'");
  }
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

// Sets a JobSpec field from text, as the server reads a sweep's values.
void set_spec_field(v1::JobSpec& spec, const std::string& field, const std::string& value) {
  const auto* f = v1::JobSpec::descriptor()->FindFieldByName(field);
  if (f == nullptr) throw UsageError("--set " + field + ": JobSpec has no such field");
  nlohmann::json j = nlohmann::json::object();
  if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL) {
    j[f->json_name()] = value == "true";
  } else {
    j[f->json_name()] = value;
  }
  v1::JobSpec part;
  if (!google::protobuf::util::JsonStringToMessage(j.dump(), &part).ok()) {
    throw UsageError("--set " + field + "=" + value + ": not a valid " + f->cpp_type_name());
  }
  spec.MergeFrom(part);
}

v1::Sweep get_sweep(const ServerConnection& c, const std::string& id) {
  v1::GetSweepRequest request;
  request.set_id(id);
  v1::Sweep sweep;
  check_job_status(v1::JobService::NewStub(c.channel())->GetSweep(c.context().get(), request, &sweep), "sweep " + id);
  return sweep;
}

const v1::Job* job_of(const v1::Sweep& sweep, const std::string& id) {
  for (const auto& j : sweep.jobs()) {
    if (j.id() == id) return &j;
  }
  return nullptr;
}

// The metrics of a report: its summary without the task counts, and the
// modality gap averaged over its tasks that have one.
std::map<std::string, double> report_metrics(const v1::EvalReport& r) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : r.summary()) {
    if (k != "zeroshot_tasks" && k != "retrieval_tasks") out[k] = v;
  }
  double gap = 0;
  int n = 0;
  for (const auto& t : r.tasks()) {
    if (auto it = t.metrics().find("modality_gap"); it != t.metrics().end()) gap += it->second, ++n;
  }
  if (n > 0) out["modality_gap"] = gap / n;
  return out;
}

std::map<std::string, double> point_metrics(const v1::Job& job) {
  if (job.has_eval_report()) return report_metrics(job.eval_report());
  std::map<std::string, double> out;
  for (const char* k : {"modality_gap", "t2i_r1", "i2t_r1", "val_loss"}) {
    if (auto it = job.metrics().find(k); it != job.metrics().end()) out[k] = it->second;
  }
  return out;
}

std::vector<std::string> metric_order(const std::set<std::string>& present) {
  std::vector<std::string> out;
  for (const char* k : {"mean_zeroshot_top1", "mean_zeroshot_top5", "mean_text_to_image_r1", "mean_image_to_text_r1",
                        "modality_gap", "t2i_r1", "i2t_r1", "val_loss"}) {
    if (present.count(k)) out.push_back(k);
  }
  return out;
}

std::string show(const std::string& metric, double v) {
  return is_accuracy_metric(metric) ? format_fixed(100.0 * v, 2) + "%" : format_fixed(v, 4);
}

ordered_json sweep_table_json(const v1::Sweep& sweep) {
  ordered_json out;
  out["id"] = sweep.id();
  out["name"] = sweep.spec().name();
  ordered_json axes = ordered_json::array();
  for (const auto& a : sweep.spec().axes()) axes.push_back(a.field());
  out["axes"] = axes;
  for (const auto& job : sweep.jobs()) {
    if (job.has_base_eval_report()) {
      out["base"] = {{"model", job.base_eval_report().model()}, {"metrics", report_metrics(job.base_eval_report())}};
      break;
    }
  }
  ordered_json points = ordered_json::array();
  for (const auto& p : sweep.points()) {
    ordered_json row;
    ordered_json values = ordered_json::object();
    for (const auto& a : sweep.spec().axes()) values[a.field()] = p.values().at(a.field());
    row["values"] = values;
    row["job_id"] = p.job_id();
    const v1::Job* job = job_of(sweep, p.job_id());
    row["state"] = job ? job_state_name(job->state()) : "DELETED";
    row["model"] = job ? job->result_model() : "";
    row["metrics"] = job ? ordered_json(point_metrics(*job)) : ordered_json::object();
    if (p.epoch() > 0) {  // the model the job took at the end of this epoch
      row["epoch"] = p.epoch();
      row["model"] = "";
      row["metrics"] = ordered_json::object();
      for (int i = 0; job != nullptr && i < job->epoch_results_size(); ++i) {
        const v1::EpochResult& r = job->epoch_results(i);
        if (r.epoch() != p.epoch()) continue;
        row["model"] = r.model();
        if (r.has_eval_report()) row["metrics"] = report_metrics(r.eval_report());
      }
    }
    points.push_back(row);
  }
  out["points"] = points;
  return out;
}

void print_sweep_table(const v1::Sweep& sweep) {
  const ordered_json t = sweep_table_json(sweep);
  std::set<std::string> present;
  for (const auto& p : t["points"]) {
    for (const auto& [k, v] : p["metrics"].items()) present.insert(k);
  }
  if (t.contains("base")) {
    for (const auto& [k, v] : t["base"]["metrics"].items()) present.insert(k);
  }
  const std::vector<std::string> metrics = metric_order(present);
  std::vector<std::string> header;
  for (const auto& a : sweep.spec().axes()) header.push_back(a.field());
  for (const char* h : {"STATE", "MODEL"}) header.push_back(h);
  for (const auto& m : metrics) header.push_back(m);
  std::vector<std::vector<std::string>> rows;
  if (t.contains("base")) {
    std::vector<std::string> row(sweep.spec().axes_size(), "(base)");
    row.push_back("-");
    row.push_back(t["base"]["model"].get<std::string>());
    for (const auto& m : metrics) {
      row.push_back(t["base"]["metrics"].contains(m) ? show(m, t["base"]["metrics"][m].get<double>()) : "-");
    }
    rows.push_back(row);
  }
  for (const auto& p : t["points"]) {
    std::vector<std::string> row;
    for (const auto& a : sweep.spec().axes()) row.push_back(p["values"][a.field()].get<std::string>());
    row.push_back(p["state"].get<std::string>());
    row.push_back(p["model"].get<std::string>().empty() ? "-" : p["model"].get<std::string>());
    for (const auto& m : metrics) row.push_back(p["metrics"].contains(m) ? show(m, p["metrics"][m].get<double>()) : "-");
    rows.push_back(row);
  }
  std::cout << "sweep " << sweep.id() << " (" << sweep.spec().name() << "), " << sweep.points_size() << " points\n";
  print_table(header, rows);
}

void output_sweep(const ServerConnection& c, const v1::Sweep& sweep) {
  if (c.options().json) {
    print_json(sweep_table_json(sweep));
  } else {
    print_sweep_table(sweep);
  }
}

// Follows every job of the sweep in grid order, then shows the table. Exit
// 0 when every job SUCCEEDED.
int watch_sweep(const ServerConnection& c, const std::string& id, double reconnect_timeout_s) {
  const v1::Sweep sweep = get_sweep(c, id);
  std::vector<std::string> failed;
  std::set<std::string> followed;  // the points of an epochs sweep share a job
  for (const auto& p : sweep.points()) {
    if (!followed.insert(p.job_id()).second) continue;
    if (!c.options().json) {
      std::string where, on_the_way;
      for (const auto& q : sweep.points()) {
        if (q.job_id() != p.job_id()) continue;
        if (q.epoch() > 0) {
          on_the_way += (on_the_way.empty() ? "" : ", ") + std::to_string(q.epoch());
          continue;
        }
        for (const auto& a : sweep.spec().axes()) where += (where.empty() ? "" : ", ") + a.field() + "=" + q.values().at(a.field());
      }
      if (!on_the_way.empty()) where += " (and epochs " + on_the_way + " on the way)";
      std::cout << "== " << where << ": job " << p.job_id() << std::endl;
    }
    JobProgress progress(c.options().json ? JobProgress::Style::kQuiet : JobProgress::style_for(false));
    const v1::Job job = follow_job(c, p.job_id(), 0, reconnect_timeout_s, progress);
    progress.finish();
    if (job.state() != v1::JOB_STATE_SUCCEEDED) failed.push_back(job.id() + " " + job_state_name(job.state()));
  }
  output_sweep(c, get_sweep(c, id));
  if (!failed.empty()) {
    std::string list;
    for (const auto& f : failed) list += (list.empty() ? "" : ", ") + f;
    throw failed_precondition("sweep " + id + ": " + std::to_string(failed.size()) + " job(s) did not succeed: " + list);
  }
  return 0;
}

int submit_sweep(const ServerConnection& c, const SweepSubmitParams& p) {
  v1::SubmitSweepRequest request;
  v1::SweepSpec& spec = *request.mutable_spec();
  v1::JobSpec& job = *spec.mutable_job();
  job.set_base_model(p.base);
  job.set_data(p.data);
  if (!p.model_name.empty()) job.set_name(p.model_name);
  for (const auto& s : p.set) {
    const auto [field, value] = split_assignment(s, "--set");
    set_spec_field(job, field, value);
  }
  if (!p.eval_suite.empty()) job.set_eval_suite(read_json_file(p.eval_suite).dump());
  spec.set_name(p.name);
  for (const auto& g : p.grid) {
    const auto [field, values] = split_assignment(g, "--grid");
    auto* axis = spec.add_axes();
    axis->set_field(field);
    size_t start = 0;
    for (;;) {
      const size_t comma = values.find(',', start);
      axis->add_values(values.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  request.set_client_request_id(p.request_id.empty() ? random_request_id() : p.request_id);
  v1::Sweep sweep;
  const auto status = v1::JobService::NewStub(c.channel())->SubmitSweep(c.context().get(), request, &sweep);
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE || status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    check_job_status(status, "the sweep may or may not have been submitted; rerun with --request-id " +
                                 request.client_request_id() + " to submit it at most once");
  }
  check_job_status(status);
  if (c.options().json) {
    print_json(sweep_table_json(sweep));
    std::cout.flush();
  } else {
    std::cout << "sweep " << sweep.id() << " (" << sweep.spec().name() << "): " << sweep.points_size() << " points, "
              << sweep.jobs_size() << (sweep.jobs_size() == 1 ? " job" : " jobs") << " queued" << std::endl;
  }
  return p.watch ? watch_sweep(c, sweep.id(), p.reconnect_timeout_s) : 0;
}

int list_sweeps(const ServerConnection& c) {
  v1::ListSweepsResponse response;
  check_job_status(
      v1::JobService::NewStub(c.channel())->ListSweeps(c.context().get(), v1::ListSweepsRequest(), &response));
  if (c.options().json) {
    auto list = ordered_json::array();
    for (const auto& s : response.sweeps()) list.push_back(sweep_table_json(s));
    print_json(list);
    return 0;
  }
  if (response.sweeps().empty()) {
    std::cout << "no sweeps (submit one with `refinery sweep submit --base MODEL --data SPEC --grid FIELD=V1,V2`)\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : response.sweeps()) {
    std::map<std::string, int> states;
    for (const auto& j : s.jobs()) states[job_state_name(j.state())]++;
    std::string summary;
    for (const auto& [state, n] : states) summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " " + state;
    rows.push_back({s.id(), s.spec().name(), std::to_string(s.points_size()), summary,
                    format_local_time(s.created_unix_ms())});
  }
  print_table({"ID", "NAME", "POINTS", "JOBS", "CREATED"}, rows);
  return 0;
}

int cancel_sweep(const ServerConnection& c, const std::string& id) {
  v1::CancelSweepRequest request;
  request.set_id(id);
  v1::Sweep sweep;
  check_job_status(v1::JobService::NewStub(c.channel())->CancelSweep(c.context().get(), request, &sweep));
  output_sweep(c, sweep);
  return 0;
}

bool all_numbers(const google::protobuf::RepeatedPtrField<std::string>& values) {
  for (const auto& v : values) {
    try {
      size_t used = 0;
      std::stod(v, &used);
      if (used != v.size()) return false;
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

std::string metric_title(const std::string& m) {
  static const std::map<std::string, std::string> titles = {
      {"mean_zeroshot_top1", "mean zero-shot top-1"},
      {"mean_zeroshot_top5", "mean zero-shot top-5"},
      {"mean_text_to_image_r1", "text-to-image R@1"},
      {"mean_image_to_text_r1", "image-to-text R@1"},
      {"modality_gap", "modality gap"},
      {"t2i_r1", "validation text-to-image R@1"},
      {"i2t_r1", "validation image-to-text R@1"},
      {"val_loss", "validation loss"}};
  auto it = titles.find(m);
  return it != titles.end() ? it->second : m;
}

int plot_sweep(const ServerConnection& c, const SweepPlotParams& p) {
  const v1::Sweep sweep = get_sweep(c, p.id);
  const auto& axes = sweep.spec().axes();
  if (axes.size() > 2) throw invalid_argument("sweep " + p.id + " has " + std::to_string(axes.size()) + " axes: plot draws one or two");
  const ordered_json t = sweep_table_json(sweep);
  std::set<std::string> present;
  for (const auto& pt : t["points"]) {
    for (const auto& [k, v] : pt["metrics"].items()) present.insert(k);
  }
  if (present.empty()) throw failed_precondition("sweep " + p.id + " has no finished point to plot yet");
  std::error_code ec;
  std::filesystem::create_directories(p.output, ec);
  if (ec) throw invalid_argument("cannot create " + p.output + ": " + ec.message());
  auto value_at = [&](const std::string& metric, const std::map<std::string, std::string>& where) {
    for (const auto& pt : t["points"]) {
      bool match = true;
      for (const auto& [k, v] : where) match &= pt["values"][k].get<std::string>() == v;
      if (match && pt["metrics"].contains(metric)) return pt["metrics"][metric].get<double>();
    }
    return std::numeric_limits<double>::quiet_NaN();
  };
  std::vector<std::string> written;
  for (const auto& metric : metric_order(present)) {
    const double scale = is_accuracy_metric(metric) ? 100.0 : 1.0;
    const std::string unit = is_accuracy_metric(metric) ? " (%)" : "";
    const bool lines = axes.size() == 1 && all_numbers(axes[0].values());
    const std::string path = p.output + "/" + (lines ? "line-" : "heatmap-") + metric + "." + p.format;
    // Enough decimals on the cells to tell the values apart.
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& pt : t["points"]) {
      if (!pt["metrics"].contains(metric)) continue;
      const double v = scale * pt["metrics"][metric].get<double>();
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
    int decimals = is_accuracy_metric(metric) ? 1 : 3;
    if (hi > lo) decimals = std::max(decimals, std::min(6, 1 - static_cast<int>(std::floor(std::log10(hi - lo)))));
    if (axes.size() == 2) {
      HeatmapSpec m;
      m.title = metric_title(metric) + unit + ", sweep " + sweep.spec().name();
      m.y_label = axes[0].field();
      m.x_label = axes[1].field();
      m.x_ticks.assign(axes[1].values().begin(), axes[1].values().end());
      m.y_ticks.assign(axes[0].values().begin(), axes[0].values().end());
      m.decimals = decimals;
      for (const auto& row : axes[0].values()) {
        std::vector<double> r;
        for (const auto& col : axes[1].values()) {
          r.push_back(scale * value_at(metric, {{axes[0].field(), row}, {axes[1].field(), col}}));
        }
        m.values.push_back(r);
      }
      write_heatmap(m, path);
    } else if (lines) {
      LineChartSpec chart;
      chart.title = metric_title(metric) + unit + " against " + axes[0].field();
      chart.x_label = axes[0].field();
      chart.y_label = metric_title(metric) + unit;
      chart.markers = true;
      PlotSeries s{"refined", {}, {}};
      for (const auto& v : axes[0].values()) {
        s.x.push_back(std::stod(v));
        s.y.push_back(scale * value_at(metric, {{axes[0].field(), v}}));
      }
      chart.series.push_back(s);
      if (t.contains("base") && t["base"]["metrics"].contains(metric)) {
        const double b = scale * t["base"]["metrics"][metric].get<double>();
        chart.series.push_back({"base " + t["base"]["model"].get<std::string>(), {s.x.front(), s.x.back()}, {b, b}});
      }
      write_line_chart(chart, path);
    } else {  // categories (methods): a one-row heatmap
      HeatmapSpec m;
      m.title = metric_title(metric) + unit + " by " + axes[0].field();
      m.x_label = axes[0].field();
      m.y_label = "";
      m.x_ticks.assign(axes[0].values().begin(), axes[0].values().end());
      m.y_ticks = {""};
      m.decimals = decimals;
      std::vector<double> r;
      for (const auto& v : axes[0].values()) r.push_back(scale * value_at(metric, {{axes[0].field(), v}}));
      m.values.push_back(r);
      m.height = 360;
      write_heatmap(m, path);
    }
    written.push_back(path);
  }
  if (c.options().json) {
    print_json({{"files", written}});
  } else {
    for (const auto& f : written) std::cout << f << '\n';
  }
  return 0;
}

}  // namespace

void add_sweep_commands(CLI::App& app, Command& command) {
  auto* sweep = app.add_subcommand("sweep", "Sweeps: a grid of refine jobs, their result table and figures");
  sweep->require_subcommand(1);

  auto* submit = sweep->add_subcommand("submit", "Queue one refine job per grid point (every combination)");
  auto sp = std::make_shared<SweepSubmitParams>();
  submit->add_option("--base", sp->base, "Model to refine: NAME or NAME@VERSION")->required();
  submit->add_option("--data", sp->data, "Training data on the server's disk (coco:, csv:, jsonl:)")->required();
  submit->add_option("--grid", sp->grid,
                     "FIELD=V1,V2,... an axis of the grid over a JobSpec field (repeatable): lambda_rafa, lambda_hycd, "
                     "alpha, epochs, lr, method, ...")
      ->required();
  submit->add_option("--set", sp->set, "FIELD=VALUE for every job (repeatable), e.g. batch_size=64");
  submit->add_option("--eval-suite", sp->eval_suite,
                     "Suite file evaluated on the base (once) and on every point's model");
  submit->add_option("--name", sp->name, "Name of the sweep (default: its axes)");
  submit->add_option("--model-name", sp->model_name,
                     "Prefix of the models' names (default: BASE-METHOD); each adds -FIELD-VALUE per axis");
  submit->add_option("--request-id", sp->request_id, "Idempotency key (default: random)");
  submit->add_flag("--watch", sp->watch, "Then follow every job and print the result table");
  submit->add_option("--reconnect-timeout", sp->reconnect_timeout_s, "Seconds to keep reconnecting while watching")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  submit->callback([&command, sp] {
    command.run = [&command, sp] { return submit_sweep(ServerConnection(command.options), *sp); };
  });

  auto* watch = sweep->add_subcommand("watch", "Follow every job of a sweep, then print its result table");
  auto wid = std::make_shared<std::string>();
  auto wtimeout = std::make_shared<double>(kDefaultReconnectTimeoutS);
  watch->add_option("id", *wid, "Sweep id")->required();
  watch->add_option("--reconnect-timeout", *wtimeout, "Seconds to keep reconnecting")->check(CLI::NonNegativeNumber);
  watch->callback([&command, wid, wtimeout] {
    command.run = [&command, wid, wtimeout] { return watch_sweep(ServerConnection(command.options), *wid, *wtimeout); };
  });

  auto* show_cmd = sweep->add_subcommand("show", "A sweep's result table: a row per point, the base first");
  auto sid = std::make_shared<std::string>();
  show_cmd->add_option("id", *sid, "Sweep id")->required();
  show_cmd->callback([&command, sid] {
    command.run = [&command, sid] {
      ServerConnection c(command.options);
      output_sweep(c, get_sweep(c, *sid));
      return 0;
    };
  });

  sweep->add_subcommand("list", "Sweeps on the server")->callback([&command] {
    command.run = [&command] { return list_sweeps(ServerConnection(command.options)); };
  });

  auto* cancel = sweep->add_subcommand("cancel", "Cancel every job of a sweep that has not ended");
  auto cid = std::make_shared<std::string>();
  cancel->add_option("id", *cid, "Sweep id")->required();
  cancel->callback([&command, cid] {
    command.run = [&command, cid] { return cancel_sweep(ServerConnection(command.options), *cid); };
  });

  auto* plot = sweep->add_subcommand(
      "plot", "Figures: a heatmap per metric (two axes), metric against value (one axis)");
  auto pp = std::make_shared<SweepPlotParams>();
  plot->add_option("id", pp->id, "Sweep id")->required();
  plot->add_option("--output", pp->output, "Folder for the figures (created)")->required();
  plot->add_option("--format", pp->format, "png or svg")->check(CLI::IsMember({"png", "svg"}))->capture_default_str();
  plot->callback([&command, pp] {
    command.run = [&command, pp] { return plot_sweep(ServerConnection(command.options), *pp); };
  });
}

}  // namespace refinery::client
