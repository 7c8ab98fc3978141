// Charts: the files are valid PNG (by their header and size) or SVG of the
// size asked for, differ with what they show, and bad input is refused
// without leaving a file.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/base/error.h"
#include "core/plot/charts.h"
#include "support/fixture.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;

// Width and height from a PNG's IHDR chunk; {0, 0} if it is not a PNG.
std::pair<uint32_t, uint32_t> png_size(const std::string& bytes) {
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 || bytes.compare(12, 4, "IHDR") != 0) return {0, 0};
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
           (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
  };
  return {be32(16), be32(20)};
}

LineChartSpec losses() {
  LineChartSpec c;
  c.title = "Training losses";
  c.x_label = "step";
  c.y_label = "loss";
  for (int s = 0; s < 3; ++s) {
    PlotSeries series{"term " + std::to_string(s), {}, {}};
    for (int i = 0; i < 50; ++i) {
      series.x.push_back(i);
      series.y.push_back((3 - s) * std::exp(-i / 20.0) + (i == 7 ? NAN : 0.0));  // a NaN is left out
    }
    c.series.push_back(series);
  }
  return c;
}

TEST(Charts, LineChartsArePngOrSvgOfTheSizeAskedFor) {
  testing::TempDir dir;
  LineChartSpec c = losses();
  c.width = 640;
  c.height = 480;
  write_line_chart(c, dir / "a.png");
  EXPECT_EQ(png_size(testing::read_file(dir / "a.png")), (std::pair<uint32_t, uint32_t>{640, 480}));
  write_line_chart(c, dir / "a.svg");
  const std::string svg = testing::read_file(dir / "a.svg");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("width=\"640"), std::string::npos) << svg.substr(0, 300);
  // Other data, another picture.
  c.series.pop_back();
  write_line_chart(c, dir / "b.png");
  EXPECT_NE(testing::read_file(dir / "a.png"), testing::read_file(dir / "b.png"));
  EXPECT_FALSE(fs::exists(dir / "a.png.partial"));
}

TEST(Charts, HeatmapsAreWritten) {
  testing::TempDir dir;
  HeatmapSpec m;
  m.title = "mean zero-shot top-1";
  m.x_label = "lambda_hycd";
  m.y_label = "lambda_rafa";
  m.x_ticks = {"0.2", "0.4", "0.6"};
  m.y_ticks = {"0.5", "1.0"};
  m.values = {{0.1, 0.2, 0.3}, {0.4, NAN, 0.6}};
  write_heatmap(m, dir / "h.png");
  EXPECT_EQ(png_size(testing::read_file(dir / "h.png")), (std::pair<uint32_t, uint32_t>{900, 700}));
  m.values[0][0] = 0.9;
  write_heatmap(m, dir / "h2.png");
  EXPECT_NE(testing::read_file(dir / "h.png"), testing::read_file(dir / "h2.png"));
}

TEST(Charts, BadInputIsRefusedAndLeavesNoFile) {
  testing::TempDir dir;
  auto expect_refused = [&](const std::function<void()>& f, const std::string& mention) {
    try {
      f();
      FAIL() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
    }
  };
  LineChartSpec c = losses();
  expect_refused([&] { write_line_chart(c, dir / "a.jpg"); }, ".png or .svg");
  c.series[1].y.pop_back();
  expect_refused([&] { write_line_chart(c, dir / "a.png"); }, "term 1");
  LineChartSpec empty;
  expect_refused([&] { write_line_chart(empty, dir / "e.png"); }, "no finite points");
  HeatmapSpec m;
  m.values = {{1, 2}};
  m.x_ticks = {"a"};
  m.y_ticks = {"r"};
  expect_refused([&] { write_heatmap(m, dir / "h.png"); }, "ticks");
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

}  // namespace
}  // namespace refinery
