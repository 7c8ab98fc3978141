// A one-line progress bar for long work in the command-line tools:
//
//   embedding images  [##########..........]  512/1024  50%  87.3/s  ETA 0:06
//
// It is drawn only when its stream is a terminal (piped or redirected output
// stays as it was) and redrawn at most every `redraw_ms`. When the work ends
// and finish() is called, the last state stays on the line with the elapsed
// time, as tqdm leaves it.
// Safe to update from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace refinery {

struct ProgressBarOptions {
  enum class Mode { kAuto, kAlways, kNever };
  std::string label;
  std::string unit = "items";   // shown when the total is unknown: "312 images  87.3/s"
  Mode mode = Mode::kAuto;      // kAuto: only when `stream` is a terminal
  std::FILE* stream = stderr;
  int redraw_ms = 100;
  int width = 0;                // columns; 0: the terminal's (80 when unknown)
};

class ProgressBar {
 public:
  // `total` 0 means unknown: a counter and a rate, no bar.
  explicit ProgressBar(int64_t total, ProgressBarOptions options = {});
  ~ProgressBar();  // ends a drawn line that finish() did not
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(int64_t done);  // items done so far (absolute)
  void advance(int64_t n = 1);
  void set_total(int64_t total);
  void set_label(const std::string& label);
  // Draws the final state and ends the line; later updates draw nothing.
  void finish();
  bool enabled() const { return enabled_; }

  // The line for `done` of `total` after `seconds`, at most `width` columns:
  // what update() draws (pure, for tests).
  static std::string render(const std::string& label, const std::string& unit, int64_t done, int64_t total,
                            double seconds, int width, bool finished);

 private:
  void update_locked(int64_t done);
  void draw_locked(bool final);

  ProgressBarOptions options_;
  bool enabled_ = false;
  bool finished_ = false;
  int64_t total_ = 0;
  int64_t done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
  std::mutex mu_;
};

// "1:05", "12:00:03": a duration in seconds as a clock reads (negative: 0:00).
std::string clock_duration(double seconds);

// The width of the terminal `stream` writes to, or `fallback` when it is not
// a terminal.
int terminal_columns(std::FILE* stream, int fallback = 80);

}  // namespace refinery
