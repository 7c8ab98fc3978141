#include "server/metrics/metrics_registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <set>
#include <utility>

#include "core/base/error.h"

namespace refinery {

namespace {

// std::atomic<double>::fetch_add is C++20; a CAS loop is lock-free on every
// platform we build for.
void atomic_add(std::atomic<double>& target, double delta) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

bool is_valid_metric_name(const std::string& name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

bool is_valid_label_name(const std::string& name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
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

// Prometheus rejects a whole scrape over one invalid UTF-8 byte, and label
// values come from user data (model names, file names), so bad bytes become
// U+FFFD instead. `quote` is whether '"' needs escaping (label values only).
void append_escaped(std::string& out, const std::string& text, bool quote) {
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      const std::size_t len = utf8_sequence_length(text, i);
      if (len == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
        continue;
      }
      out.append(text, i, len);
      i += len;
      continue;
    }
    ++i;
  }
}

void append_value(std::string& out, double v) { out += format_metric_value(v); }

// `name{a="x",b="y"[,le="0.5"]} value\n`
void append_sample(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values, const char* le, double value) {
  out += name;
  if (!label_names.empty() || le != nullptr) {
    out += '{';
    for (std::size_t i = 0; i < label_names.size(); ++i) {
      if (i > 0) out += ',';
      out += label_names[i];
      out += "=\"";
      append_escaped(out, label_values[i], /*quote=*/true);
      out += '"';
    }
    if (le != nullptr) {
      if (!label_names.empty()) out += ',';
      out += "le=\"";
      out += le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  append_value(out, value);
  out += '\n';
}

void write_samples(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values, const Counter& counter,
                   const std::vector<double>& /*upper_bounds*/) {
  append_sample(out, name, label_names, label_values, nullptr, counter.value());
}

void write_samples(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values, const Gauge& gauge,
                   const std::vector<double>& /*upper_bounds*/) {
  append_sample(out, name, label_names, label_values, nullptr, gauge.value());
}

void write_samples(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values, const Histogram& histogram,
                   const std::vector<double>& upper_bounds) {
  const Histogram::Snapshot snap = histogram.snapshot();
  const std::string bucket_name = name + "_bucket";
  for (std::size_t i = 0; i < upper_bounds.size(); ++i) {
    const std::string le = format_metric_value(upper_bounds[i]);
    append_sample(out, bucket_name, label_names, label_values, le.c_str(),
                  static_cast<double>(snap.cumulative_counts[i]));
  }
  append_sample(out, bucket_name, label_names, label_values, "+Inf", static_cast<double>(snap.count));
  append_sample(out, name + "_sum", label_names, label_values, nullptr, snap.sum);
  append_sample(out, name + "_count", label_names, label_values, nullptr, static_cast<double>(snap.count));
}

template <typename Metric>
std::unique_ptr<Metric> make_child(const std::vector<double>& upper_bounds);

template <>
std::unique_ptr<Counter> make_child<Counter>(const std::vector<double>&) {
  return std::make_unique<Counter>();
}
template <>
std::unique_ptr<Gauge> make_child<Gauge>(const std::vector<double>&) {
  return std::make_unique<Gauge>();
}
template <>
std::unique_ptr<Histogram> make_child<Histogram>(const std::vector<double>& upper_bounds) {
  return std::make_unique<Histogram>(upper_bounds);
}

std::vector<double> checked_upper_bounds(std::vector<double> bounds, const std::string& what) {
  if (!bounds.empty() && bounds.back() == INFINITY) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      throw invalid_argument(what + ": bucket upper bound " + std::to_string(i) + " is " +
                             format_metric_value(bounds[i]) + "; only a trailing +Inf is allowed");
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      throw invalid_argument(what + ": bucket upper bounds must be strictly increasing, but bound " +
                             std::to_string(i) + " (" + format_metric_value(bounds[i]) + ") follows " +
                             format_metric_value(bounds[i - 1]));
    }
  }
  return bounds;
}

// The series names a family puts in the exposition; two families may not share one.
std::vector<std::string> exposed_names(const std::string& name, MetricType type) {
  if (type == MetricType::kHistogram) return {name, name + "_bucket", name + "_sum", name + "_count"};
  return {name};
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

std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Exact integers (counts, bytes) print plainly: to_chars' shortest form
  // would write 1000000 as "1e+06". 2^53 is where doubles stop being exact.
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    return std::to_string(static_cast<std::int64_t>(v));
  }
  // Shortest round-trip digits. Plain decimals where they read well
  // ("0.0005", "1795970381.76"); exponents only for the very small or large
  // ("1e-05", "1.5e+300"), where the general form switches to them anyway.
  char buf[400];  // fixed notation of a double needs at most ~330 characters
  const double magnitude = std::fabs(v);
  const auto format = magnitude >= 1e-4 && magnitude < 1e15 ? std::chars_format::fixed : std::chars_format::general;
  const auto result = std::to_chars(buf, buf + sizeof(buf), v, format);
  return std::string(buf, result.ptr);
}

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  append_escaped(out, value, /*quote=*/true);
  return out;
}

// --- Counter, Gauge, Histogram ---------------------------------------------

void Counter::inc(double v) {
  if (!(v >= 0.0)) return;
  atomic_add(value_, v);
}

void Counter::set_total(double total) { value_.store(total, std::memory_order_relaxed); }

void Gauge::inc(double v) { atomic_add(value_, v); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(checked_upper_bounds(std::move(upper_bounds), "histogram")),
      bucket_counts_(new std::atomic<std::uint64_t>[upper_bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= upper_bounds_.size(); ++i) bucket_counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  // "le" is inclusive, hence lower_bound; NaN compares false with everything,
  // so route it to +Inf explicitly (as client_golang does).
  std::size_t index = upper_bounds_.size();
  if (!std::isnan(v)) {
    index = static_cast<std::size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) -
                                     upper_bounds_.begin());
  }
  bucket_counts_[index].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snap;
  snap.cumulative_counts.reserve(upper_bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += bucket_counts_[i].load(std::memory_order_relaxed);
    snap.cumulative_counts.push_back(running);
  }
  snap.count = running;
  snap.sum = sum_.load(std::memory_order_relaxed);
  return snap;
}

// --- Families ----------------------------------------------------------------

MetricFamily::MetricFamily(std::string name, std::string help, MetricType type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), type_(type), label_names_(std::move(label_names)) {}

template <typename Metric>
Family<Metric>::Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
                       std::vector<double> upper_bounds)
    : MetricFamily(std::move(name), std::move(help), type, std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {}

template <typename Metric>
Metric& Family<Metric>::with(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size()) {
    throw invalid_argument("metric \"" + name_ + "\" has " + std::to_string(label_names_.size()) + " label(s) (" +
                           join(label_names_) + ") but got " + std::to_string(label_values.size()) +
                           " value(s) (" + join(label_values) + ")");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = children_.find(label_values);
  if (it == children_.end()) {
    it = children_.emplace(label_values, make_child<Metric>(upper_bounds_)).first;
  }
  return *it->second;
}

template <typename Metric>
void Family<Metric>::remove(const std::vector<std::string>& label_values) {
  std::lock_guard<std::mutex> lock(mutex_);
  children_.erase(label_values);
}

template <typename Metric>
void Family<Metric>::write(std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (children_.empty()) return;
  out += "# HELP ";
  out += name_;
  out += ' ';
  append_escaped(out, help_, /*quote=*/false);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += metric_type_name(type_);
  out += '\n';
  for (const auto& [values, child] : children_) {
    write_samples(out, name_, label_names_, values, *child, upper_bounds_);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry ------------------------------------------------------------------

MetricFamily& MetricsRegistry::register_family(const std::string& name, const std::string& help, MetricType type,
                                               const std::vector<std::string>& label_names,
                                               std::vector<double> upper_bounds) {
  const std::string what = std::string(metric_type_name(type)) + " \"" + name + "\"";
  if (!is_valid_metric_name(name)) {
    throw invalid_argument("invalid metric name \"" + name + "\": it must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  std::set<std::string> seen;
  for (const auto& label : label_names) {
    if (!is_valid_label_name(label)) {
      throw invalid_argument(what + ": invalid label name \"" + label + "\": it must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if (label.compare(0, 2, "__") == 0) {
      throw invalid_argument(what + ": label name \"" + label + "\" is reserved (\"__\" prefix)");
    }
    if (type == MetricType::kHistogram && label == "le") {
      throw invalid_argument(what + ": label name \"le\" is reserved for histogram buckets");
    }
    if (!seen.insert(label).second) {
      throw invalid_argument(what + ": label name \"" + label + "\" appears twice");
    }
  }
  if (type == MetricType::kHistogram) upper_bounds = checked_upper_bounds(std::move(upper_bounds), what);

  std::lock_guard<std::mutex> lock(families_mutex_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    const MetricFamily& existing = *it->second;
    const std::vector<double>* existing_bounds = nullptr;
    if (existing.type() == MetricType::kHistogram) {
      existing_bounds = &static_cast<const HistogramFamily&>(existing).upper_bounds();
    }
    const bool same = existing.type() == type && existing.label_names() == label_names &&
                      existing.help() == help && (existing_bounds == nullptr || *existing_bounds == upper_bounds);
    if (!same) {
      throw invalid_argument("metric \"" + name + "\" is already registered as " +
                             metric_type_name(existing.type()) + " with labels (" + join(existing.label_names()) +
                             ") and help \"" + existing.help() + "\"; cannot register it again as " +
                             metric_type_name(type) + " with labels (" + join(label_names) + ") and help \"" +
                             help + "\"" + (existing_bounds ? " (or with other buckets)" : ""));
    }
    return *it->second;
  }
  const std::vector<std::string> mine = exposed_names(name, type);
  for (const auto& [other_name, other] : families_) {
    for (const auto& theirs : exposed_names(other_name, other->type())) {
      if (std::find(mine.begin(), mine.end(), theirs) != mine.end()) {
        throw invalid_argument(what + " would expose series \"" + theirs + "\", which " +
                               metric_type_name(other->type()) + " \"" + other_name + "\" already exposes");
      }
    }
  }

  std::unique_ptr<MetricFamily> family;
  switch (type) {
    case MetricType::kCounter:
      family = std::make_unique<CounterFamily>(name, help, type, label_names, std::vector<double>{});
      if (label_names.empty()) static_cast<CounterFamily&>(*family).with();
      break;
    case MetricType::kGauge:
      family = std::make_unique<GaugeFamily>(name, help, type, label_names, std::vector<double>{});
      if (label_names.empty()) static_cast<GaugeFamily&>(*family).with();
      break;
    case MetricType::kHistogram:
      family = std::make_unique<HistogramFamily>(name, help, type, label_names, std::move(upper_bounds));
      if (label_names.empty()) static_cast<HistogramFamily&>(*family).with();
      break;
  }
  return *families_.emplace(name, std::move(family)).first->second;
}

CounterFamily& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                        const std::vector<std::string>& label_names) {
  return static_cast<CounterFamily&>(register_family(name, help, MetricType::kCounter, label_names, {}));
}

GaugeFamily& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                                    const std::vector<std::string>& label_names) {
  return static_cast<GaugeFamily&>(register_family(name, help, MetricType::kGauge, label_names, {}));
}

HistogramFamily& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                            std::vector<double> upper_bounds,
                                            const std::vector<std::string>& label_names) {
  return static_cast<HistogramFamily&>(
      register_family(name, help, MetricType::kHistogram, label_names, std::move(upper_bounds)));
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

  std::string out;
  std::lock_guard<std::mutex> lock(families_mutex_);
  for (const auto& [name, family] : families_) family->write(out);
  return out;
}

// --- Buckets -------------------------------------------------------------------

std::vector<double> exponential_buckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    throw invalid_argument("exponential_buckets needs start > 0, factor > 1 and count >= 1, got start " +
                           format_metric_value(start) + ", factor " + format_metric_value(factor) + ", count " +
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
                           format_metric_value(start) + ", width " + format_metric_value(width) + ", count " +
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
