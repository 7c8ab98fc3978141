// Refinery's Prometheus metrics, on prometheus-cpp: its registry holds the
// families and their series and its TextSerializer writes the exposition
// format (0.0.4). This file adds what refineryd needs on top:
//
// - families declared with their label names, and children looked up by
//   label values in that order: `family.with({"EmbedText", "OK"})`;
// - one registration policy with errors that name the metric: invalid or
//   reserved names, the same name registered again with another type,
//   labels, help or buckets, or a name whose series another family exposes;
// - collectors that run right before each scrape, for values read at scrape
//   time (queue depths, loaded models);
// - label values made valid UTF-8 (U+FFFD for invalid bytes), and the
//   output sorted by family and series, so a scrape is stable.
//
// Hot path: look a child up once, keep the reference (valid until remove()
// of the same values or the registry's end), update it with prometheus-cpp's
// atomics: Increment, Set, Observe.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace refinery {

using Counter = prometheus::Counter;
using Gauge = prometheus::Gauge;
using Histogram = prometheus::Histogram;

enum class MetricType { kCounter, kGauge, kHistogram };
const char* metric_type_name(MetricType type);  // "counter", "gauge", "histogram"

// A counter that mirrors a monotonic total read at scrape time (CPU seconds,
// a library's own statistics): moves it up to `total`; never down.
void set_counter_total(Counter& counter, double total);

template <typename Metric>
class Family {
 public:
  // The child for these label values (one per label name, in order),
  // created on first use. Throws invalid_argument on a wrong count.
  Metric& with(const std::vector<std::string>& label_values = {});
  // Drops a child, e.g. a per-index gauge after the index is deleted. Only
  // for children nobody caches: a held reference dangles afterwards.
  void remove(const std::vector<std::string>& label_values);

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Only the registry makes families.
  Family(prometheus::Family<Metric>& family, std::string name, std::vector<std::string> label_names,
         std::vector<double> upper_bounds);

 private:
  prometheus::Labels labels(const std::vector<std::string>& values) const;

  prometheus::Family<Metric>& family_;
  std::string name_;
  std::vector<std::string> label_names_;
  std::vector<double> upper_bounds_;  // histograms only
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class MetricsRegistry {
 public:
  // What serialize() produces, for the HTTP Content-Type header.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers a family, or returns the existing one when name, help, type,
  // label names (and buckets) are the same. Throws invalid_argument on an
  // invalid metric or label name, a reserved label ("__*", "le" on
  // histograms), a duplicate label, or a clash with another family's
  // definition or exposed series names (e.g. "x_count" next to histogram
  // "x"). A family without labels gets its single child at once, so it
  // shows 0.
  CounterFamily& counter(const std::string& name, const std::string& help,
                         const std::vector<std::string>& label_names = {});
  GaugeFamily& gauge(const std::string& name, const std::string& help,
                     const std::vector<std::string>& label_names = {});
  // `upper_bounds` must be strictly increasing and not NaN; a trailing +Inf
  // is dropped since it is always implied.
  HistogramFamily& histogram(const std::string& name, const std::string& help, std::vector<double> upper_bounds,
                             const std::vector<std::string>& label_names = {});

  using CollectorId = std::uint64_t;
  // Runs `collector` before every serialisation so it can set gauges (or
  // counters via set_counter_total) from state read at scrape time.
  // Collectors never run concurrently with each other. They must not call
  // serialize(), add_collector() or remove_collector().
  CollectorId add_collector(std::function<void()> collector);
  // Once this returns the collector is not running and never runs again, so
  // the objects it captured may be destroyed.
  void remove_collector(CollectorId id);

  // Runs the collectors, then writes every family sorted by name, series
  // sorted by label values. An exception from a collector propagates.
  std::string serialize() const;

 private:
  struct Entry {
    MetricType type;
    std::string help;
    std::vector<std::string> label_names;
    std::vector<double> upper_bounds;
    std::shared_ptr<void> family;  // the Family<T> of `type`
  };
  Entry& register_family(const std::string& name, const std::string& help, MetricType type,
                         const std::vector<std::string>& label_names, std::vector<double> upper_bounds);

  prometheus::Registry registry_;
  mutable std::mutex families_mutex_;
  std::map<std::string, Entry> families_;

  // Serialises scrapes so collectors never overlap, and makes
  // remove_collector() wait for a running scrape.
  mutable std::mutex scrape_mutex_;
  std::map<CollectorId, std::function<void()>> collectors_;
  CollectorId next_collector_id_ = 1;
};

// Bucket helpers. Seconds for latencies, counts for batch and request sizes.
std::vector<double> exponential_buckets(double start, double factor, int count);
std::vector<double> linear_buckets(double start, double width, int count);
// 0.5 ms .. 30 s in a 1-2.5-5 progression, so `le` labels read as round numbers.
std::vector<double> latency_buckets_seconds();
// 1, 2, 4, ..., 512.
std::vector<double> size_buckets();

// A label value as it is exposed: valid UTF-8, each invalid byte replaced by
// U+FFFD (exposed for tests).
std::string valid_utf8(const std::string& value);

}  // namespace refinery
