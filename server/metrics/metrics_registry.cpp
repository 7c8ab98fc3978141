#include "server/metrics/metrics_registry.h"

#include <prometheus/check_names.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <utility>

#include "core/base/error.h"

namespace refinery {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

// A number in an error message, spelled as Prometheus spells the odd ones.
std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is invalid
// (overlong forms, surrogates and code points above U+10FFFF included).
std::size_t utf8_sequence_length(const std::string& s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return len;
}

std::vector<double> checked_upper_bounds(std::vector<double> bounds, const std::string& what) {
  if (!bounds.empty() && bounds.back() == INFINITY) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      throw invalid_argument(what + ": bucket upper bound " + std::to_string(i) + " is " + number(bounds[i]) +
                             "; only a trailing +Inf is allowed");
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      throw invalid_argument(what + ": bucket upper bounds must be strictly increasing, but bound " +
                             std::to_string(i) + " (" + number(bounds[i]) + ") follows " + number(bounds[i - 1]));
    }
  }
  return bounds;
}

// The series names a family puts in the exposition; two families may not share one.
std::vector<std::string> exposed_names(const std::string& name, MetricType type) {
  if (type == MetricType::kHistogram) return {name, name + "_bucket", name + "_sum", name + "_count"};
  return {name};
}

// HELP text as the exposition format wants it: backslash and newline
// escaped (prometheus-cpp writes help as given).
std::string escaped_help(const std::string& help) {
  std::string out;
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return valid_utf8(out);
}

prometheus::MetricType prometheus_type(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return prometheus::MetricType::Counter;
    case MetricType::kGauge: return prometheus::MetricType::Gauge;
    case MetricType::kHistogram: return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

// A scrape in a stable order: families by name, series by label values.
void sort_for_exposition(std::vector<prometheus::MetricFamily>& families) {
  std::sort(families.begin(), families.end(),
            [](const prometheus::MetricFamily& a, const prometheus::MetricFamily& b) { return a.name < b.name; });
  for (auto& family : families) {
    std::sort(family.metric.begin(), family.metric.end(),
              [](const prometheus::ClientMetric& a, const prometheus::ClientMetric& b) {
                return std::lexicographical_compare(
                    a.label.begin(), a.label.end(), b.label.begin(), b.label.end(),
                    [](const prometheus::ClientMetric::Label& x, const prometheus::ClientMetric::Label& y) {
                      return x.name != y.name ? x.name < y.name : x.value < y.value;
                    });
              });
  }
}

}  // namespace

const char* metric_type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

std::string valid_utf8(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size();) {
    const std::size_t len = utf8_sequence_length(value, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(value, i, len);
      i += len;
    }
  }
  return out;
}

void set_counter_total(Counter& counter, double total) {
  const double delta = total - counter.Value();
  if (delta > 0) counter.Increment(delta);
}

// --- Families --------------------------------------------------------------------

template <typename Metric>
Family<Metric>::Family(prometheus::Family<Metric>& family, std::string name, std::vector<std::string> label_names,
                       std::vector<double> upper_bounds)
    : family_(family), name_(std::move(name)), label_names_(std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {}

template <typename Metric>
prometheus::Labels Family<Metric>::labels(const std::vector<std::string>& values) const {
  if (values.size() != label_names_.size()) {
    throw invalid_argument("metric \"" + name_ + "\" has labels (" + join(label_names_) + "), got " +
                           std::to_string(values.size()) + " value(s)");
  }
  prometheus::Labels out;
  for (std::size_t i = 0; i < values.size(); ++i) out.emplace(label_names_[i], valid_utf8(values[i]));
  return out;
}

template <>
Counter& Family<Counter>::with(const std::vector<std::string>& label_values) {
  return family_.Add(labels(label_values));
}

template <>
Gauge& Family<Gauge>::with(const std::vector<std::string>& label_values) {
  return family_.Add(labels(label_values));
}

template <>
Histogram& Family<Histogram>::with(const std::vector<std::string>& label_values) {
  return family_.Add(labels(label_values), upper_bounds_);
}

template <typename Metric>
void Family<Metric>::remove(const std::vector<std::string>& label_values) {
  const prometheus::Labels l = labels(label_values);
  if (family_.Has(l)) family_.Remove(&with(label_values));
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry ------------------------------------------------------------------

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Entry& MetricsRegistry::register_family(const std::string& name, const std::string& help,
                                                         MetricType type, const std::vector<std::string>& label_names,
                                                         std::vector<double> upper_bounds) {
  const std::string what = std::string(metric_type_name(type)) + " \"" + name + "\"";
  if (!prometheus::CheckMetricName(name)) {
    throw invalid_argument("invalid metric name \"" + name + "\": it must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  std::set<std::string> seen;
  for (const auto& label : label_names) {
    if (label.compare(0, 2, "__") == 0) {
      throw invalid_argument(what + ": label name \"" + label + "\" is reserved (\"__\" prefix)");
    }
    if (type == MetricType::kHistogram && label == "le") {
      throw invalid_argument(what + ": label name \"le\" is reserved for histogram buckets");
    }
    if (!prometheus::CheckLabelName(label, prometheus_type(type))) {
      throw invalid_argument(what + ": invalid label name \"" + label + "\": it must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if (!seen.insert(label).second) {
      throw invalid_argument(what + ": label name \"" + label + "\" appears twice");
    }
  }
  if (type == MetricType::kHistogram) upper_bounds = checked_upper_bounds(std::move(upper_bounds), what);

  std::lock_guard<std::mutex> lock(families_mutex_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    const Entry& existing = it->second;
    const bool same = existing.type == type && existing.label_names == label_names && existing.help == help &&
                      existing.upper_bounds == upper_bounds;
    if (!same) {
      throw invalid_argument("metric \"" + name + "\" is already registered as " + metric_type_name(existing.type) +
                             " with labels (" + join(existing.label_names) + ") and help \"" + existing.help +
                             "\"; cannot register it again as " + metric_type_name(type) + " with labels (" +
                             join(label_names) + ") and help \"" + help + "\"" +
                             (type == MetricType::kHistogram ? " (or with other buckets)" : ""));
    }
    return it->second;
  }
  const std::vector<std::string> mine = exposed_names(name, type);
  for (const auto& [other_name, other] : families_) {
    for (const auto& theirs : exposed_names(other_name, other.type)) {
      if (std::find(mine.begin(), mine.end(), theirs) != mine.end()) {
        throw invalid_argument(what + " would expose series \"" + theirs + "\", which " +
                               metric_type_name(other.type) + " \"" + other_name + "\" already exposes");
      }
    }
  }

  Entry entry{type, help, label_names, upper_bounds, nullptr};
  switch (type) {
    case MetricType::kCounter: {
      auto& f = prometheus::BuildCounter().Name(name).Help(escaped_help(help)).Register(registry_);
      auto family = std::make_shared<CounterFamily>(f, name, label_names, std::vector<double>{});
      if (label_names.empty()) family->with();
      entry.family = family;
      break;
    }
    case MetricType::kGauge: {
      auto& f = prometheus::BuildGauge().Name(name).Help(escaped_help(help)).Register(registry_);
      auto family = std::make_shared<GaugeFamily>(f, name, label_names, std::vector<double>{});
      if (label_names.empty()) family->with();
      entry.family = family;
      break;
    }
    case MetricType::kHistogram: {
      auto& f = prometheus::BuildHistogram().Name(name).Help(escaped_help(help)).Register(registry_);
      auto family = std::make_shared<HistogramFamily>(f, name, label_names, upper_bounds);
      if (label_names.empty()) family->with();
      entry.family = family;
      break;
    }
  }
  return families_.emplace(name, std::move(entry)).first->second;
}

CounterFamily& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                        const std::vector<std::string>& label_names) {
  return *static_cast<CounterFamily*>(register_family(name, help, MetricType::kCounter, label_names, {}).family.get());
}

GaugeFamily& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                                    const std::vector<std::string>& label_names) {
  return *static_cast<GaugeFamily*>(register_family(name, help, MetricType::kGauge, label_names, {}).family.get());
}

HistogramFamily& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                            std::vector<double> upper_bounds,
                                            const std::vector<std::string>& label_names) {
  return *static_cast<HistogramFamily*>(
      register_family(name, help, MetricType::kHistogram, label_names, std::move(upper_bounds)).family.get());
}

MetricsRegistry::CollectorId MetricsRegistry::add_collector(std::function<void()> collector) {
  if (!collector) throw invalid_argument("metrics collector is empty");
  std::lock_guard<std::mutex> lock(scrape_mutex_);
  const CollectorId id = next_collector_id_++;
  collectors_.emplace(id, std::move(collector));
  return id;
}

void MetricsRegistry::remove_collector(CollectorId id) {
  std::lock_guard<std::mutex> lock(scrape_mutex_);
  collectors_.erase(id);
}

std::string MetricsRegistry::serialize() const {
  std::lock_guard<std::mutex> scrape_lock(scrape_mutex_);
  // Collectors run without families_mutex_ held, so they may register families.
  for (const auto& [id, collector] : collectors_) collector();
  std::vector<prometheus::MetricFamily> families = registry_.Collect();
  sort_for_exposition(families);
  return prometheus::TextSerializer().Serialize(families);
}

// --- Buckets -------------------------------------------------------------------

std::vector<double> exponential_buckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    throw invalid_argument("exponential_buckets needs start > 0, factor > 1 and count >= 1, got start " +
                           number(start) + ", factor " + number(factor) + ", count " +
                           std::to_string(count));
  }
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(count));
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) out.push_back(bound);
  return out;
}

std::vector<double> linear_buckets(double start, double width, int count) {
  if (!(width > 0) || count < 1 || !std::isfinite(start)) {
    throw invalid_argument("linear_buckets needs a finite start, width > 0 and count >= 1, got start " +
                           number(start) + ", width " + number(width) + ", count " +
                           std::to_string(count));
  }
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) out.push_back(start + width * i);
  return out;
}

std::vector<double> latency_buckets_seconds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

std::vector<double> size_buckets() { return exponential_buckets(1, 2, 10); }

}  // namespace refinery
