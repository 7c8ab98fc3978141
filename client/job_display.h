// How `refinery jobs` shows jobs and their progress events: job states
// without the JOB_STATE_ prefix, jobs and events as proto JSON, and a
// JobProgress printer that turns an event stream into one JSON object per
// line (--json), a live progress line redrawn in place (a terminal), or one
// plain line per event (a pipe or a log file).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "refinery/job_json.h"
#include "refinery/v1/job.pb.h"

namespace refinery::client {

using refinery::job_event_to_json;
using refinery::job_state_name;
using refinery::job_to_json;

// RUNNING, running or JOB_STATE_RUNNING; throws UsageError naming `flag`.
v1::JobState parse_job_state(const std::string& text, const std::string& flag);

bool job_finished(v1::JobState state);  // SUCCEEDED, FAILED or CANCELLED


// "2026-11-29 18:29:36" in local time; "-" for 0.
std::string format_local_time(int64_t unix_ms);

class JobProgress {
 public:
  enum class Style { kJson, kLive, kPlain, kQuiet };  // kQuiet shows nothing

  // kJson with --json, else kLive when stdout is a terminal, else kPlain.
  static Style style_for(bool json);

  explicit JobProgress(Style style) : style_(style) {}
  ~JobProgress() { finish(); }
  JobProgress(const JobProgress&) = delete;
  JobProgress& operator=(const JobProgress&) = delete;

  void show(const v1::JobEvent& event);

  // A message about the watch itself (reconnecting...): on stderr, so that
  // stdout stays one JSON object per line; the live line is kept below it.
  void notice(const std::string& message);

  // Ends the live line, so that whatever is printed next starts a new one.
  void finish();

 private:
  void print_line(const std::string& line);  // a line of its own, above the live line
  void redraw();
  void clear_live_line();
  std::string step_line() const;
  std::string eval_line() const;
  std::string live_line() const;  // the latest progress: a step or an evaluation batch

  Style style_;
  std::optional<v1::StepEvent> last_step_;
  std::optional<v1::EvalProgressEvent> last_eval_;
  bool eval_is_latest_ = false;
  std::optional<double> gap_;  // latest modality gap of an evaluation
  bool drawn_ = false;         // the live line is on the screen
};

}  // namespace refinery::client
