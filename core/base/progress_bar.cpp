#include "core/base/progress_bar.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace refinery {
namespace {

std::string rate_text(double per_second) {
  char buf[32];
  std::snprintf(buf, sizeof buf, per_second >= 100 ? "%.0f/s" : per_second >= 10 ? "%.1f/s" : "%.2f/s", per_second);
  return buf;
}

}  // namespace

int terminal_columns(std::FILE* stream, int fallback) {
  winsize ws{};
  if (ioctl(fileno(stream), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return fallback;
}

std::string clock_duration(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, std::round(seconds)));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  }
  return buf;
}

std::string ProgressBar::render(const std::string& label, const std::string& unit, int64_t done, int64_t total,
                                double seconds, int width, bool finished) {
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  std::string right;
  if (total > 0) {
    const int64_t shown = std::min(done, total);
    right = "  " + std::to_string(shown) + "/" + std::to_string(total) + "  " +
            std::to_string(static_cast<int>(100.0 * static_cast<double>(shown) / static_cast<double>(total))) + "%";
  } else {
    right = "  " + std::to_string(done) + " " + unit;
  }
  if (seconds >= 0.5 && done > 0) right += "  " + rate_text(rate);
  if (finished) {
    right += "  " + clock_duration(seconds);
  } else if (total > 0 && done > 0 && done < total && seconds >= 0.5) {
    right += "  ETA " + clock_duration(static_cast<double>(total - done) / rate);
  }
  // The line stays one column short of the width: writing the last column
  // wraps on some terminals.
  const int room = std::max(1, width - 1);
  std::string left = label;
  std::string bar;
  if (total > 0) {
    // The bar keeps one width from start to end: it leaves room for the
    // longest numbers this total can show.
    const std::string t = std::to_string(total);
    const int widest_right = static_cast<int>(("  " + t + "/" + t + "  100%  99999/s  ETA 9:59:59").size());
    const int cells = std::min(30, room - static_cast<int>(left.size()) - widest_right - 4);  // "  [" + "]"
    if (cells >= 5) {
      const int full = static_cast<int>(static_cast<double>(cells) * static_cast<double>(std::min(done, total)) /
                                        static_cast<double>(total));
      bar = "  [" + std::string(full, '#') + std::string(cells - full, '.') + "]";
    }
  }
  std::string line = left + bar + right;
  if (static_cast<int>(line.size()) > room) line = line.substr(line.size() - room);  // keep the numbers
  return line;
}

ProgressBar::ProgressBar(int64_t total, ProgressBarOptions options) : options_(std::move(options)), total_(total) {
  using Mode = ProgressBarOptions::Mode;
  enabled_ = options_.mode == Mode::kAlways ||
             (options_.mode == Mode::kAuto && options_.stream != nullptr && isatty(fileno(options_.stream)) == 1);
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() {
  // Work that threw ends here unfinished: the line is ended, not redrawn as
  // done, so the error starts on a line of its own.
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_ || !drawn_) return;
  std::fputc('\n', options_.stream);
  std::fflush(options_.stream);
}

void ProgressBar::update(int64_t done) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  update_locked(done);
}

void ProgressBar::advance(int64_t n) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  update_locked(done_ + n);
}

void ProgressBar::update_locked(int64_t done) {
  if (finished_) return;
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(options_.redraw_ms)) return;
  last_draw_ = now;
  draw_locked(false);
}

void ProgressBar::set_total(int64_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  total_ = total;
}

void ProgressBar::set_label(const std::string& label) {
  std::lock_guard<std::mutex> lock(mu_);
  options_.label = label;
}

void ProgressBar::finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  draw_locked(true);
  std::fputc('\n', options_.stream);
  std::fflush(options_.stream);
}

void ProgressBar::draw_locked(bool final) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int width = options_.width > 0 ? options_.width : terminal_columns(options_.stream);
  const std::string line = render(options_.label, options_.unit, done_, total_, seconds, width, final);
  // \r back to the start of the line, \033[K clears what a longer line left.
  std::fprintf(options_.stream, "\r%s\033[K", line.c_str());
  std::fflush(options_.stream);
  drawn_ = true;
}

}  // namespace refinery
