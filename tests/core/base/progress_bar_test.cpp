#include "core/base/progress_bar.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace refinery {
namespace {

// What a bar wrote to a temporary file.
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  return out;
}

TEST(ProgressBar, RendersCountShareRateAndTimeLeft) {
  const std::string line = ProgressBar::render("embedding", "images", 512, 1024, 10.0, 120, false);
  EXPECT_EQ(line.rfind("embedding  [", 0), 0u) << line;
  // Half of the 30 cells are full.
  EXPECT_NE(line.find("[" + std::string(15, '#') + std::string(15, '.') + "]"), std::string::npos) << line;
  EXPECT_NE(line.find("512/1024  50%  51.2/s  ETA 0:10"), std::string::npos) << line;
}

TEST(ProgressBar, TheBarKeepsItsWidthAsTheNumbersGrow) {
  // 80 columns: the bar shrinks to leave room for the widest numbers of this
  // total, and stays that wide from the first update to the last.
  const std::string first = ProgressBar::render("embedding", "images", 1, 1024, 0.1, 80, false);
  const std::string middle = ProgressBar::render("embedding", "images", 700, 1024, 12.0, 80, false);
  const std::string last = ProgressBar::render("embedding", "images", 1024, 1024, 3725.0, 80, true);
  const auto bar_width = [](const std::string& l) { return l.find(']') - l.find('['); };
  EXPECT_EQ(bar_width(first), bar_width(middle)) << first << "\n" << middle;
  EXPECT_EQ(bar_width(first), bar_width(last)) << first << "\n" << last;
  for (const auto& line : {first, middle, last}) EXPECT_LT(line.size(), 80u) << line;
}

TEST(ProgressBar, FinishedLineShowsElapsedTimeInsteadOfTimeLeft) {
  const std::string line = ProgressBar::render("eval", "items", 1024, 1024, 75.0, 80, true);
  EXPECT_NE(line.find("1024/1024  100%  13.7/s  1:15"), std::string::npos) << line;
  EXPECT_EQ(line.find("ETA"), std::string::npos) << line;
}

TEST(ProgressBar, UnknownTotalShowsACounterAndARate) {
  const std::string line = ProgressBar::render("drawing", "images", 312, 0, 4.0, 80, false);
  EXPECT_EQ(line, "drawing  312 images  78.0/s");
}

TEST(ProgressBar, NarrowTerminalDropsTheBarAndKeepsTheNumbers) {
  const std::string line = ProgressBar::render("a long label for a narrow terminal", "items", 3, 4, 2.0, 30, false);
  EXPECT_LE(line.size(), 29u) << line;
  EXPECT_EQ(line.find('['), std::string::npos) << line;
  EXPECT_NE(line.find("3/4  75%"), std::string::npos) << line;
}

TEST(ProgressBar, ClockDurations) {
  EXPECT_EQ(clock_duration(0), "0:00");
  EXPECT_EQ(clock_duration(65), "1:05");
  EXPECT_EQ(clock_duration(3725), "1:02:05");
  EXPECT_EQ(clock_duration(-5), "0:00");
}

TEST(ProgressBar, AStreamThatIsNoTerminalHasTheFallbackWidth) {
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(terminal_columns(file), 80);
  EXPECT_EQ(terminal_columns(file, 0), 0);
  std::fclose(file);
}

TEST(ProgressBar, DrawsNothingWhenTheStreamIsNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBarOptions o;
    o.stream = f;  // kAuto: a file is not a terminal
    ProgressBar bar(10, o);
    EXPECT_FALSE(bar.enabled());
    for (int i = 1; i <= 10; ++i) bar.update(i);
    bar.finish();
  }
  EXPECT_EQ(contents(f), "");
  std::fclose(f);
}

TEST(ProgressBar, RedrawsOneLineAndEndsItWhenFinished) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  ProgressBarOptions o;
  o.label = "work";
  o.mode = ProgressBarOptions::Mode::kAlways;
  o.stream = f;
  o.redraw_ms = 0;
  o.width = 80;
  {
    ProgressBar bar(4, o);
    for (int i = 0; i < 4; ++i) bar.advance();
    bar.finish();
    bar.update(99);  // after finish: nothing
  }
  const std::string out = contents(f);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(std::count(out.begin(), out.end(), '\r'), 5) << out;  // 4 updates + the final draw
  const std::string last = out.substr(out.rfind('\r') + 1);
  EXPECT_NE(last.find("4/4  100%"), std::string::npos) << last;
  EXPECT_EQ(out.find("99"), std::string::npos) << out;
  std::fclose(f);
}

TEST(ProgressBar, WorkThatThrowsEndsTheLineWithoutDrawingItDone) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  ProgressBarOptions o;
  o.mode = ProgressBarOptions::Mode::kAlways;
  o.stream = f;
  o.width = 80;
  {
    ProgressBar bar(4, o);
    bar.update(1);
  }  // no finish()
  const std::string out = contents(f);
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.find("1/4  25%"), std::string::npos) << out;
  EXPECT_EQ(out.find("100%"), std::string::npos) << out;
  std::fclose(f);
}

}  // namespace
}  // namespace refinery
