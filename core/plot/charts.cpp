#include "core/plot/charts.h"

#include <plplot/plstream.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "core/base/error.h"

namespace refinery {
namespace {

// Matplotlib's tab10: colours people tell apart.
constexpr int kPalette[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                 {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
constexpr int kInk = 15;   // cmap0 index of the axes and text colour
constexpr int kGrid = 13;  // cmap0 index of the grid lines

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const char* device_for(const std::string& path) {
  if (has_suffix(path, ".png")) return "pngcairo";
  if (has_suffix(path, ".svg")) return "svgcairo";
  throw invalid_argument("plot " + path + ": the file name must end in .png or .svg");
}

// A PLplot stream drawing into `path` through a temporary file; commit()
// closes it and moves the file into place.
class Canvas {
 public:
  Canvas(const std::string& path, int width, int height) : path_(path), tmp_(path + ".partial") {
    if (width < 200 || height < 150) throw invalid_argument("plot " + path + ": at least 200 x 150 pixels");
    pls_ = std::make_unique<plstream>();
    pls_->sdev(device_for(path));
    pls_->sfnam(tmp_.c_str());
    pls_->spage(0, 0, width, height, 0, 0);
    pls_->scolbg(255, 255, 255);
    for (int i = 0; i < 10; ++i) pls_->scol0(1 + i, kPalette[i][0], kPalette[i][1], kPalette[i][2]);
    pls_->scol0(kInk, 0, 0, 0);
    pls_->init();
    pls_->col0(kInk);
  }
  ~Canvas() {
    if (pls_) {
      pls_.reset();
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }
  plstream& operator*() { return *pls_; }
  plstream* operator->() { return pls_.get(); }

  void commit() {
    pls_.reset();  // ends the page and closes the file
    std::error_code ec;
    if (!std::filesystem::exists(tmp_) || std::filesystem::file_size(tmp_, ec) == 0) {
      throw invalid_argument("plot " + path_ + ": PLplot wrote nothing (is its cairo driver installed?)");
    }
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) throw invalid_argument("plot " + path_ + ": " + ec.message());
  }

 private:
  std::string path_, tmp_;
  std::unique_ptr<plstream> pls_;
};

// [lo, hi] of the finite values, widened a little (and never empty).
std::pair<double, double> padded_range(double lo, double hi, double pad) {
  if (!(lo <= hi)) return {0, 1};
  if (hi - lo < 1e-12) {
    const double d = std::max(std::abs(lo) * 0.1, 0.5);
    return {lo - d, hi + d};
  }
  const double d = (hi - lo) * pad;
  return {lo - d, hi + d};
}

}  // namespace

void write_line_chart(const LineChartSpec& c, const std::string& path) {
  device_for(path);
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  size_t points = 0;
  for (const auto& s : c.series) {
    if (s.x.size() != s.y.size()) {
      throw invalid_argument("plot " + path + ": series '" + s.label + "' has " + std::to_string(s.x.size()) +
                             " x values and " + std::to_string(s.y.size()) + " y values");
    }
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
      ++points;
    }
  }
  if (points == 0) throw invalid_argument("plot " + path + ": no finite points to draw");
  const auto [x0, x1] = padded_range(xlo, xhi, 0.0);
  const auto [y0, y1] = padded_range(ylo, yhi, 0.06);
  Canvas pls(path, c.width, c.height);
  pls->schr(0, 1.1);
  // Room on the right for the legend, sized by its longest label.
  size_t longest = 0;
  for (const auto& s : c.series) longest = std::max(longest, s.label.size());
  const double legend_room = c.series.size() > 1 ? std::min(0.45, 0.08 + 0.0115 * longest) : 0.0;
  pls->adv(0);
  pls->vpor(0.14, 0.95 - legend_room, 0.12, 0.9);
  pls->wind(x0, x1, y0, y1);
  pls->scol0(kGrid, 220, 220, 220);
  pls->col0(kGrid);
  pls->width(1);
  pls->box("g", 0, 0, "g", 0, 0);  // a light grid behind the lines
  pls->col0(kInk);
  pls->box("bcnst", 0, 0, "bcnstvf", 0, 0);  // f: plain numbers, no "(x10^-2)"
  pls->mtex("b", 3.0, 0.5, 0.5, c.x_label.c_str());
  pls->mtex("l", 6.2, 0.5, 0.5, c.y_label.c_str());
  pls->mtex("t", 1.5, 0.5, 0.5, c.title.c_str());
  pls->width(2);
  for (size_t si = 0; si < c.series.size(); ++si) {
    const auto& s = c.series[si];
    std::vector<double> x, y;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) x.push_back(s.x[i]), y.push_back(s.y[i]);
    }
    if (x.empty()) continue;
    pls->col0(1 + static_cast<int>(si % 10));
    pls->lsty(1 + static_cast<int>(si / 10 % 8));  // past ten series the dashes tell them apart
    pls->line(static_cast<int>(x.size()), x.data(), y.data());
    if (c.markers || x.size() == 1) {
      pls->ssym(0, 1.4);
      pls->poin(static_cast<int>(x.size()), x.data(), y.data(), 17);
    }
  }
  pls->lsty(1);
  if (c.series.size() > 1) {
    const int n = static_cast<int>(c.series.size());
    std::vector<PLINT> opts(n, PL_LEGEND_LINE), text_colors(n, kInk), colors(n), styles(n);
    std::vector<PLFLT> widths(n, 2.0);
    std::vector<const char*> text(n);
    for (int i = 0; i < n; ++i) {
      colors[i] = 1 + i % 10;
      styles[i] = 1 + i / 10 % 8;
      text[i] = c.series[static_cast<size_t>(i)].label.c_str();
    }
    PLFLT lw = 0, lh = 0;
    pls->col0(kInk);
    pls->legend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
                PL_POSITION_OUTSIDE | PL_POSITION_RIGHT, 0.02, 0.0, 0.06, 0, kInk, 1, 0, 0, n,
                opts.data(), 0.8, 0.9, 1.6, 0.0, text_colors.data(), text.data(), nullptr, nullptr, nullptr, nullptr,
                colors.data(), styles.data(), widths.data(), nullptr, nullptr, nullptr, nullptr);
  }
  pls.commit();
}

void write_heatmap(const HeatmapSpec& m, const std::string& path) {
  device_for(path);
  const size_t rows = m.values.size();
  if (rows == 0 || m.values[0].empty()) throw invalid_argument("plot " + path + ": no values to draw");
  const size_t cols = m.values[0].size();
  for (const auto& r : m.values) {
    if (r.size() != cols) throw invalid_argument("plot " + path + ": rows of different lengths");
  }
  if (m.x_ticks.size() != cols || m.y_ticks.size() != rows) {
    throw invalid_argument("plot " + path + ": " + std::to_string(m.x_ticks.size()) + " x ticks and " +
                           std::to_string(m.y_ticks.size()) + " y ticks for " + std::to_string(rows) + " x " +
                           std::to_string(cols) + " values");
  }
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& r : m.values) {
    for (double v : r) {
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
  Canvas pls(path, m.width, m.height);
  // Viridis, from dark purple through teal to yellow.
  PLFLT pos[] = {0.0, 0.33, 0.66, 1.0};
  PLFLT red[] = {68 / 255.0, 49 / 255.0, 53 / 255.0, 253 / 255.0};
  PLFLT green[] = {1 / 255.0, 104 / 255.0, 183 / 255.0, 231 / 255.0};
  PLFLT blue[] = {84 / 255.0, 142 / 255.0, 121 / 255.0, 37 / 255.0};
  pls->scmap1l(true, 4, pos, red, green, blue, nullptr);
  pls->schr(0, 1.1);
  pls->adv(0);
  // Margins of a fixed size in pixels, whatever the height (a one-row map is short).
  const double bottom = std::min(0.35, 0.13 * 700.0 / m.height), top = std::min(0.25, 0.1 * 700.0 / m.height);
  pls->vpor(0.14, 0.94, bottom, 1.0 - top);
  pls->wind(0, static_cast<double>(cols), 0, static_cast<double>(rows));
  char text[64];
  for (size_t r = 0; r < rows; ++r) {
    for (size_t col = 0; col < cols; ++col) {
      const double v = m.values[r][col];
      PLFLT xs[] = {static_cast<double>(col), static_cast<double>(col + 1), static_cast<double>(col + 1),
                    static_cast<double>(col)};
      PLFLT ys[] = {static_cast<double>(r), static_cast<double>(r), static_cast<double>(r + 1),
                    static_cast<double>(r + 1)};
      const double t = std::isfinite(v) ? (hi > lo ? (v - lo) / (hi - lo) : 0.5) : 0.0;
      if (std::isfinite(v)) {
        pls->col1(t);
      } else {
        pls->col0(8);  // gray: no value
      }
      pls->fill(4, xs, ys);
      pls->col0(kInk);
      if (std::isfinite(v)) {
        std::snprintf(text, sizeof text, "%.*f", m.decimals, v);
      } else {
        std::snprintf(text, sizeof text, "-");
      }
      // Dark text on the light (yellow) end, white on the dark end.
      pls->scol0(14, t > 0.6 ? 0 : 255, t > 0.6 ? 0 : 255, t > 0.6 ? 0 : 255);
      pls->col0(14);
      pls->ptex(col + 0.5, r + 0.5, 1, 0, 0.5, text);
    }
  }
  pls->col0(kInk);
  pls->box("bc", 0, 0, "bc", 0, 0);
  for (size_t col = 0; col < cols; ++col) {
    pls->mtex("b", 1.4, (col + 0.5) / static_cast<double>(cols), 0.5, m.x_ticks[col].c_str());
  }
  for (size_t r = 0; r < rows; ++r) {
    pls->mtex("lv", 0.8, (r + 0.5) / static_cast<double>(rows), 1.0, m.y_ticks[r].c_str());
  }
  pls->mtex("b", 3.2, 0.5, 0.5, m.x_label.c_str());
  pls->mtex("l", 5.0, 0.5, 0.5, m.y_label.c_str());
  pls->mtex("t", 1.5, 0.5, 0.5, m.title.c_str());
  pls.commit();
}

}  // namespace refinery
