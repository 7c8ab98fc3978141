// Charts for people to read, drawn with PLplot: line charts (metrics against
// a step or a parameter, a series per run) and heatmaps (a metric over a
// two-parameter grid, the value printed on each cell). Always titled, axes
// labelled, a legend when there is more than one series. The format comes
// from the file name: .png (cairo) or .svg. Files are written beside their
// place and renamed, so a failed plot never leaves half a file. No LibTorch.
#pragma once

#include <string>
#include <vector>

namespace refinery {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // same length; non-finite points are left out
};

struct LineChartSpec {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  int width = 900, height = 600;  // pixels
  bool markers = false;           // a dot on every point (few points, e.g. a sweep)
};

struct HeatmapSpec {
  std::string title, x_label, y_label;
  std::vector<std::string> x_ticks, y_ticks;  // column and row labels
  std::vector<std::vector<double>> values;    // [row][column]; NaN: no value
  int decimals = 3;                           // of the values printed on the cells
  int width = 900, height = 700;
};

// INVALID_ARGUMENT for an unknown extension, mismatched lengths, nothing to
// draw, or a file that cannot be written.
void write_line_chart(const LineChartSpec& chart, const std::string& path);
void write_heatmap(const HeatmapSpec& map, const std::string& path);

}  // namespace refinery
