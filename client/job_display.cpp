#include "client/job_display.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>

#include "client/client_errors.h"
#include "client/output.h"
#include "core/base/progress_bar.h"
#include "refinery/proto_json.h"

namespace refinery::client {
namespace {

constexpr const char* kStatePrefix = "JOB_STATE_";
constexpr const char* kClearToEol = "\x1b[K";

// Losses and metrics: 4 significant digits is what a human compares.
std::string short_number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", value);
  return buf;
}

std::string local_clock(int64_t unix_ms) {
  if (unix_ms <= 0) return "";
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return std::string(buf) + ' ';
}

// The evaluation's modality gap: "modality_gap" when the server reports it
// under that name, else the first metric whose name mentions a gap.
std::optional<double> modality_gap(const google::protobuf::Map<std::string, double>& metrics) {
  if (auto it = metrics.find("modality_gap"); it != metrics.end()) return it->second;
  const std::map<std::string, double> sorted(metrics.begin(), metrics.end());
  for (const auto& [name, value] : sorted) {
    if (name.find("gap") != std::string::npos) return value;
  }
  return std::nullopt;
}

std::string describe_metrics(const google::protobuf::Map<std::string, double>& metrics) {
  const std::map<std::string, double> sorted(metrics.begin(), metrics.end());
  std::string out;
  for (const auto& [name, value] : sorted) out += (out.empty() ? "" : " ") + name + "=" + short_number(value);
  return out.empty() ? "(no metrics)" : out;
}

}  // namespace

v1::JobState parse_job_state(const std::string& text, const std::string& flag) {
  std::string name;
  for (char ch : text) name += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (name.compare(0, std::string(kStatePrefix).size(), kStatePrefix) != 0) name = kStatePrefix + name;
  v1::JobState state;
  if (v1::JobState_Parse(name, &state) && state != v1::JOB_STATE_UNSPECIFIED) return state;
  std::string known;
  for (int i = v1::JobState_MIN; i <= v1::JobState_MAX; ++i) {
    if (!v1::JobState_IsValid(i) || i == v1::JOB_STATE_UNSPECIFIED) continue;
    known += (known.empty() ? "" : ", ") + job_state_name(static_cast<v1::JobState>(i));
  }
  throw UsageError(flag + ": unknown job state '" + text + "' (one of " + known + ")");
}

bool job_finished(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED;
}

std::string format_local_time(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

JobProgress::Style JobProgress::style_for(bool json) {
  if (json) return Style::kJson;
  return isatty(STDOUT_FILENO) ? Style::kLive : Style::kPlain;
}

void JobProgress::show(const v1::JobEvent& event) {
  if (style_ == Style::kQuiet) return;
  if (style_ == Style::kJson) {
    print_json(job_event_to_json(event));
    std::cout.flush();  // a watcher reads it as it happens
    return;
  }
  const std::string when = local_clock(event.unix_ms());
  switch (event.event_case()) {
    case v1::JobEvent::kStep:
      last_step_ = event.step();
      eval_is_latest_ = false;
      if (style_ == Style::kLive) {
        redraw();
      } else {
        print_line(when + step_line());
      }
      break;
    case v1::JobEvent::kEvalProgress:
      last_eval_ = event.eval_progress();
      eval_is_latest_ = true;
      if (style_ == Style::kLive) {
        redraw();
      } else {
        print_line(when + eval_line());
      }
      break;
    case v1::JobEvent::kEvalTask: {
      const auto& t = event.eval_task();
      const auto& r = t.result();
      print_line(when + t.phase() + " " + t.model() + ": task " + r.name() + " (" + r.kind() + ", " +
                 std::to_string(r.n()) + " images, " + format_fixed(r.seconds(), 1) + " s): " +
                 describe_metrics(r.metrics()));
      break;
    }
    case v1::JobEvent::kState: {
      const auto& s = event.state();
      print_line(when + "state " + job_state_name(s.state()) + (s.message().empty() ? "" : ": " + s.message()));
      break;
    }
    case v1::JobEvent::kEval:
      if (auto gap = modality_gap(event.eval().metrics())) gap_ = gap;
      print_line(when + "eval @ step " + std::to_string(event.eval().step()) + ": " +
                 describe_metrics(event.eval().metrics()));
      break;
    case v1::JobEvent::kCheckpoint:
      print_line(when + "checkpoint @ step " + std::to_string(event.checkpoint().step()) + ": " +
                 event.checkpoint().path());
      break;
    case v1::JobEvent::kResult:
      if (event.result().epoch() > 0) {
        print_line(when + "epoch " + std::to_string(event.result().epoch()) + " ended: model " + event.result().model());
      } else {
        print_line(when + "result: model " + event.result().model());
      }
      break;
    case v1::JobEvent::EVENT_NOT_SET:
      // An event kind newer than this client: say so rather than drop it.
      print_line(when + "event " + std::to_string(event.seq()) + " (unknown kind)");
      break;
  }
}

void JobProgress::notice(const std::string& message) {
  if (style_ == Style::kQuiet) {
    std::cerr << "refinery: " << message << std::endl;
    return;
  }
  clear_live_line();
  std::cerr << "refinery: " << message << std::endl;
  redraw();
}

void JobProgress::finish() {
  if (drawn_) std::cout << std::endl;
  drawn_ = false;
}

void JobProgress::print_line(const std::string& line) {
  clear_live_line();
  std::cout << line << std::endl;
  redraw();
}

void JobProgress::clear_live_line() {
  if (!drawn_) return;
  std::cout << '\r' << kClearToEol << std::flush;
  drawn_ = false;
}

void JobProgress::redraw() {
  if (style_ != Style::kLive || (!last_step_ && !last_eval_)) return;
  std::string line = live_line();
  // A wrapped line cannot be redrawn with '\r'; cut it to the terminal.
  const int columns = terminal_columns(stdout, 0);
  if (columns > 1 && line.size() >= static_cast<size_t>(columns)) line.resize(columns - 1);
  std::cout << '\r' << line << kClearToEol << std::flush;
  drawn_ = true;
}

std::string JobProgress::live_line() const {
  return (eval_is_latest_ || !last_step_) ? eval_line() : step_line();
}

std::string JobProgress::eval_line() const {
  const auto& e = *last_eval_;
  std::string line = e.phase() + " " + e.model() + ": task " + e.task() + " (" + std::to_string(e.task_index() + 1) +
                     "/" + std::to_string(e.tasks()) + ") " + e.stage() + "  " + std::to_string(e.done()) + "/" +
                     std::to_string(e.total());
  if (e.total() > 0) {
    line += " " + format_fixed(100.0 * static_cast<double>(e.done()) / static_cast<double>(e.total()), 1) + "%";
  }
  if (e.items_per_second() > 0) line += "  " + format_fixed(e.items_per_second(), 1) + " items/s";
  if (e.eta_seconds() > 0) line += "  ETA " + clock_duration(e.eta_seconds());
  return line;
}

std::string JobProgress::step_line() const {
  const auto& s = *last_step_;
  std::string line = "step " + std::to_string(s.step());
  if (s.total_steps() > 0) {
    line += "/" + std::to_string(s.total_steps()) + " " +
            format_fixed(100.0 * static_cast<double>(s.step()) / static_cast<double>(s.total_steps()), 1) + "%";
    if (s.eta_seconds() > 0 || s.step() >= s.total_steps()) line += "  ETA " + clock_duration(s.eta_seconds());
  }
  line += "  loss " + short_number(s.loss());
  // Only the terms the method has: proto3 cannot tell an absent term from 0.
  std::string terms;
  auto add_term = [&terms](const char* name, double value) {
    if (value != 0) terms += std::string(terms.empty() ? "" : ", ") + name + " " + short_number(value);
  };
  add_term("rafa", s.loss_rafa());
  add_term("hycd", s.loss_hycd());
  add_term("contrastive", s.loss_contrastive());
  add_term("align", s.loss_align());
  if (!terms.empty()) line += " (" + terms + ")";
  if (gap_) line += "  gap " + short_number(*gap_);
  if (s.samples_per_second() > 0) line += "  " + format_fixed(s.samples_per_second(), 1) + " samples/s";
  if (s.images_skipped() > 0) line += "  " + std::to_string(s.images_skipped()) + " images skipped";
  return line;
}

}  // namespace refinery::client
