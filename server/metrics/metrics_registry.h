// Refinery's own Prometheus metrics registry (prometheus-cpp is not packaged
// for us). Families of counters, gauges and histograms with fixed label names,
// serialised in the Prometheus text exposition format, version 0.0.4.
//
// Hot path: look a child up once with `family.with({...})`, keep the reference
// (it stays valid for the registry's lifetime), then update it with lock-free
// atomics. Values only known at scrape time (queue depths, loaded models) are
// filled by collectors that run right before each serialisation.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace refinery {

enum class MetricType { kCounter, kGauge, kHistogram };

const char* metric_type_name(MetricType type);  // "counter", "gauge", "histogram"

// Monotonic count. Prometheus treats a decrease as a process restart, so a
// counter only moves up.
class Counter {
 public:
  // Negative or NaN increments are ignored: they would break rate() and the
  // hot path must not throw.
  void inc(double v = 1.0);
  // For a counter that mirrors a monotonic source read at scrape time (CPU
  // seconds, a library's own statistics); call it from a collector.
  void set_total(double total);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1.0);
  void dec(double v = 1.0) { inc(-v); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted in fixed buckets. Upper bounds are inclusive ("le");
// the +Inf bucket is implicit.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);

  void observe(double v);

  // A consistent-enough copy for serialisation and tests: cumulative bucket
  // counts (one per upper bound, then +Inf), their total and the sum.
  struct Snapshot {
    std::vector<std::uint64_t> cumulative_counts;
    std::uint64_t count = 0;
    double sum = 0.0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }

 private:
  std::vector<double> upper_bounds_;
  // Per-bucket (not cumulative) counts, upper_bounds_.size() + 1 of them; the
  // count is derived from them so _count always equals the +Inf bucket.
  std::unique_ptr<std::atomic<std::uint64_t>[]> bucket_counts_;
  std::atomic<double> sum_{0.0};
};

// What every family shares: its name, help, type and label names, and how it
// writes itself out. Users hold the typed `Family<T>` below.
class MetricFamily {
 public:
  virtual ~MetricFamily() = default;
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends this family's HELP, TYPE and sample lines; nothing for a labelled
  // family that has no children yet.
  virtual void write(std::string& out) const = 0;

 protected:
  MetricFamily(std::string name, std::string help, MetricType type, std::vector<std::string> label_names);

  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

template <typename Metric>
class Family final : public MetricFamily {
 public:
  // The child for these label values (one per label name, in order), created
  // on first use. The reference stays valid until remove() of the same values
  // or the registry's destruction. Throws invalid_argument on a wrong count.
  Metric& with(const std::vector<std::string>& label_values = {});

  // Drops a child, e.g. a per-index gauge after the index is deleted. Only for
  // children nobody caches: a held reference to it dangles afterwards.
  void remove(const std::vector<std::string>& label_values);

  void write(std::string& out) const override;

  // Only the registry creates families; public for std::make_unique.
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         std::vector<double> upper_bounds);

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }  // histograms only

 private:
  std::vector<double> upper_bounds_;
  mutable std::mutex mutex_;  // guards the map, never the values
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class MetricsRegistry {
 public:
  // What serialize() produces, for the HTTP Content-Type header.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers a family, or returns the existing one when name, help, type,
  // label names (and buckets) are the same. Throws invalid_argument on an
  // invalid metric or label name, a reserved label ("__*", "le" on
  // histograms), a duplicate label, or a clash with another family's
  // definition or exposed series names (e.g. "x_count" next to histogram "x").
  // A family without labels gets its single child at once, so it shows 0.
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
  // counters via set_total) from state read at scrape time. Collectors never
  // run concurrently with each other. They must not call serialize(),
  // add_collector() or remove_collector().
  CollectorId add_collector(std::function<void()> collector);
  // Once this returns the collector is not running and never runs again, so
  // the objects it captured may be destroyed.
  void remove_collector(CollectorId id);

  // Runs the collectors, then writes every family sorted by name, children
  // sorted by label values. An exception from a collector propagates.
  std::string serialize() const;

 private:
  MetricFamily& register_family(const std::string& name, const std::string& help, MetricType type,
                                const std::vector<std::string>& label_names, std::vector<double> upper_bounds);

  mutable std::mutex families_mutex_;
  std::map<std::string, std::unique_ptr<MetricFamily>> families_;

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

// Prometheus spellings, exposed for tests: shortest round-trip decimal,
// integers without exponent or fraction, "+Inf", "-Inf", "NaN".
std::string format_metric_value(double v);
// Escapes backslash, double quote and newline.
std::string escape_label_value(const std::string& value);

}  // namespace refinery
