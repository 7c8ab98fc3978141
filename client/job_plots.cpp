#include "client/job_plots.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "client/client_errors.h"
#include "client/job_calls.h"
#include "client/output.h"
#include "core/base/error.h"
#include "core/plot/charts.h"

namespace refinery::client {
namespace {

struct PlotParams {
  std::vector<std::string> ids;
  std::string output, format = "png";
  int width = 900, height = 600;
};

// What one job's history says, by step.
struct Curves {
  std::string label;
  std::map<std::string, PlotSeries> losses;   // term -> (step, value)
  PlotSeries lr;
  std::map<std::string, PlotSeries> metrics;  // validation metric -> (step, value)
};

// The job's events up to the latest one now (a running job is drawn as far
// as it has got).
std::vector<v1::JobEvent> history(const ServerConnection& c, const v1::Job& job) {
  std::vector<v1::JobEvent> events;
  if (job.last_seq() == 0) return events;
  grpc::ClientContext context;
  set_deadline(context, c.options().timeout_s);
  v1::WatchJobRequest request;
  request.set_id(job.id());
  request.set_from_seq(1);
  auto reader = v1::JobService::NewStub(c.channel())->WatchJob(&context, request);
  v1::JobEvent e;
  while (reader->Read(&e)) {
    events.push_back(e);
    if (e.seq() >= job.last_seq()) {
      context.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) check_job_status(status, "job " + job.id());
  return events;
}

Curves curves_of(const v1::Job& job, const std::vector<v1::JobEvent>& events, bool several) {
  Curves c;
  const std::string method = job.spec().method().empty() ? "clip-refine" : job.spec().method();
  c.label = several ? job.id() + " (" + method + ")" : method;
  for (const auto& e : events) {
    if (e.has_step()) {
      const auto& s = e.step();
      const double x = static_cast<double>(s.step());
      const std::pair<const char*, double> terms[] = {{"total", s.loss()},
                                                      {"rafa", s.loss_rafa()},
                                                      {"hycd", s.loss_hycd()},
                                                      {"contrastive", s.loss_contrastive()},
                                                      {"align", s.loss_align()}};
      for (const auto& [term, v] : terms) {
        auto& series = c.losses[term];
        series.x.push_back(x);
        series.y.push_back(v);
      }
      c.lr.x.push_back(x);
      c.lr.y.push_back(s.lr());
    } else if (e.has_eval()) {
      for (const auto& [k, v] : e.eval().metrics()) {
        if (k == "val_images" || k == "val_texts") continue;  // counts, not measurements
        auto& series = c.metrics[k];
        series.x.push_back(static_cast<double>(e.eval().step()));
        series.y.push_back(v);
      }
    }
  }
  // A term the method does not have is 0 at every step: not drawn.
  for (auto it = c.losses.begin(); it != c.losses.end();) {
    bool any = false;
    for (double v : it->second.y) any |= v != 0;
    it = any ? std::next(it) : c.losses.erase(it);
  }
  return c;
}

int plot_jobs(const ServerConnection& c, const PlotParams& p) {
  std::vector<Curves> all;
  for (const auto& id : p.ids) {
    v1::Job job;
    check_job_status(get_job(c.channel(), c.options().timeout_s, id, &job));
    if (job.spec().kind() == v1::JOB_KIND_EVAL) {
      throw invalid_argument("job " + id + " is an evaluation: it has no training curves (see `jobs show`)");
    }
    all.push_back(curves_of(job, history(c, job), p.ids.size() > 1));
    if (all.back().lr.x.empty()) throw failed_precondition("job " + id + " has not taken a step yet: nothing to plot");
  }
  std::error_code ec;
  std::filesystem::create_directories(p.output, ec);
  if (ec) throw invalid_argument("cannot create " + p.output + ": " + ec.message());
  std::vector<std::string> written;
  auto chart = [&](const std::string& name, const std::string& title, const std::string& y_label,
                   std::vector<PlotSeries> series) {
    LineChartSpec spec;
    spec.title = title;
    spec.x_label = "step";
    spec.y_label = y_label;
    spec.width = p.width;
    spec.height = p.height;
    spec.series = std::move(series);
    const std::string path = p.output + "/" + name + "." + p.format;
    write_line_chart(spec, path);
    written.push_back(path);
  };
  const std::string who = p.ids.size() == 1 ? "job " + p.ids[0] : std::to_string(p.ids.size()) + " jobs";
  if (all.size() == 1) {  // every term of the one job together
    std::vector<PlotSeries> terms;
    for (auto [term, s] : all[0].losses) {
      s.label = term;
      terms.push_back(s);
    }
    chart("losses", "Training losses, " + who, "loss", terms);
  }
  std::set<std::string> terms, metrics;
  for (const auto& cv : all) {
    for (const auto& [k, s] : cv.losses) terms.insert(k);
    for (const auto& [k, s] : cv.metrics) metrics.insert(k);
  }
  for (const auto& term : terms) {
    std::vector<PlotSeries> series;
    for (const auto& cv : all) {
      if (!cv.losses.count(term)) continue;
      PlotSeries s = cv.losses.at(term);
      s.label = cv.label;
      series.push_back(s);
    }
    chart("loss-" + term, "Loss: " + term + ", " + who, term + " loss", series);
  }
  std::vector<PlotSeries> lr;
  for (const auto& cv : all) {
    PlotSeries s = cv.lr;
    s.label = cv.label;
    lr.push_back(s);
  }
  chart("lr", "Learning rate, " + who, "learning rate", lr);
  for (const auto& metric : metrics) {
    std::vector<PlotSeries> series;
    for (const auto& cv : all) {
      if (!cv.metrics.count(metric)) continue;
      PlotSeries s = cv.metrics.at(metric);
      s.label = cv.label;
      series.push_back(s);
    }
    chart("eval-" + metric, "Validation: " + metric + ", " + who, metric, series);
  }
  if (c.options().json) {
    print_json({{"files", written}});
  } else {
    for (const auto& f : written) std::cout << f << '\n';
  }
  return 0;
}

}  // namespace

void add_job_plot_command(CLI::App* jobs, Command& command) {
  auto* plot = jobs->add_subcommand(
      "plot", "Training curves as pictures: losses, learning rate and validation metrics against step");
  auto p = std::make_shared<PlotParams>();
  plot->add_option("ids", p->ids, "Job ids (several: one series per job on each chart)")->required();
  plot->add_option("--output", p->output, "Folder for the pictures (created)")->required();
  plot->add_option("--format", p->format, "png or svg")->check(CLI::IsMember({"png", "svg"}))->capture_default_str();
  plot->add_option("--width", p->width, "Pixels")->check(CLI::Range(200, 8000))->capture_default_str();
  plot->add_option("--height", p->height, "Pixels")->check(CLI::Range(150, 8000))->capture_default_str();
  plot->callback([&command, p] {
    command.run = [&command, p] { return plot_jobs(ServerConnection(command.options), *p); };
  });
}

}  // namespace refinery::client
