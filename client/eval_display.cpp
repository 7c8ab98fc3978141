#include "client/eval_display.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "client/output.h"

namespace refinery::client {
namespace {

using nlohmann::ordered_json;

const std::vector<std::string> kSummaryOrder = {"mean_zeroshot_top1", "mean_zeroshot_top5", "mean_text_to_image_r1",
                                                "mean_image_to_text_r1"};

std::string show_value(const std::string& metric, double v) {
  if (is_accuracy_metric(metric)) return format_fixed(100.0 * v, 2) + "%";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

std::string show_delta(const std::string& metric, double d) {
  char buf[32];
  if (is_accuracy_metric(metric)) {
    std::snprintf(buf, sizeof buf, "%+.2f pp", 100.0 * d);
  } else {
    std::snprintf(buf, sizeof buf, "%+.4f", d);
  }
  return buf;
}

std::optional<double> find(const google::protobuf::Map<std::string, double>& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

// The metrics of both maps: the kind's order first, then any others sorted.
std::vector<std::string> metric_names(const std::string& kind, const google::protobuf::Map<std::string, double>& a,
                                      const google::protobuf::Map<std::string, double>* b) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& m : eval_metric_order(kind)) {
    if (a.count(m) || (b && b->count(m))) {
      out.push_back(m);
      seen.insert(m);
    }
  }
  std::set<std::string> rest;
  for (const auto& [k, v] : a) rest.insert(k);
  if (b) {
    for (const auto& [k, v] : *b) rest.insert(k);
  }
  for (const auto& k : rest) {
    if (!seen.count(k)) out.push_back(k);
  }
  return out;
}

ordered_json pair_json(std::optional<double> a, std::optional<double> b) {
  ordered_json j;
  j["a"] = a ? ordered_json(*a) : ordered_json(nullptr);
  j["b"] = b ? ordered_json(*b) : ordered_json(nullptr);
  if (a && b) j["delta"] = *b - *a;
  return j;
}

const v1::EvalTaskResult* find_task(const v1::EvalReport& r, const std::string& name) {
  for (const auto& t : r.tasks()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

void print_indented(const std::string& text, const std::string& indent) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) std::cout << indent << line << '\n';
}

// print_table into a string, so that it can be indented.
std::string table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::ostringstream out;
  std::streambuf* old = std::cout.rdbuf(out.rdbuf());
  print_table(header, rows);
  std::cout.rdbuf(old);
  return out.str();
}

}  // namespace

bool is_accuracy_metric(const std::string& metric) {
  static const std::set<std::string> other = {"modality_gap",   "modality_gap_l2", "alignment", "uniformity",
                                              "zeroshot_tasks", "retrieval_tasks", "val_loss"};
  return other.count(metric) == 0;
}

const std::vector<std::string>& eval_metric_order(const std::string& kind) {
  static const std::vector<std::string> zeroshot = {"top1", "top5", "mean_per_class_recall"};
  static const std::vector<std::string> retrieval = {
      "text_to_image_r1", "text_to_image_r5", "text_to_image_r10", "image_to_text_r1", "image_to_text_r5",
      "image_to_text_r10", "modality_gap",    "modality_gap_l2",   "alignment",        "uniformity"};
  static const std::vector<std::string> none;
  if (kind == "zeroshot") return zeroshot;
  if (kind == "retrieval") return retrieval;
  if (kind == "summary") return kSummaryOrder;
  return none;
}

namespace {

// Column labels of the report tables.
std::string short_label(const std::string& metric) {
  static const std::map<std::string, std::string> labels = {
      {"top1", "TOP-1"},           {"top5", "TOP-5"},         {"mean_per_class_recall", "MEAN RECALL"},
      {"text_to_image_r1", "T2I R@1"}, {"text_to_image_r5", "R@5"}, {"text_to_image_r10", "R@10"},
      {"image_to_text_r1", "I2T R@1"}, {"image_to_text_r5", "R@5"}, {"image_to_text_r10", "R@10"},
      {"modality_gap", "GAP"},     {"modality_gap_l2", "GAP L2"}, {"alignment", "ALIGN"},
      {"uniformity", "UNIFORM"}};
  auto it = labels.find(metric);
  return it != labels.end() ? it->second : metric;
}

}  // namespace

void print_eval_report(const v1::EvalReport& r, const std::string& indent) {
  std::cout << indent << "suite " << r.suite() << " on " << r.model()
            << (r.job_id().empty() ? "" : " (job " + r.job_id() + ")") << '\n';
  for (const std::string kind : {"zeroshot", "retrieval"}) {
    std::vector<std::string> header = {"TASK", "IMAGES"};
    const std::vector<std::string>& order = eval_metric_order(kind);
    for (const auto& m : order) header.push_back(short_label(m));
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : r.tasks()) {
      if (t.kind() != kind) continue;
      std::vector<std::string> row = {t.name(), std::to_string(t.n())};
      for (const auto& m : order) {
        const auto v = find(t.metrics(), m);
        row.push_back(v ? show_value(m, *v) : "-");
      }
      rows.push_back(row);
    }
    if (!rows.empty()) print_indented(table(header, rows), indent + "  ");
  }
  std::string summary;
  for (const auto& m : kSummaryOrder) {
    if (const auto v = find(r.summary(), m)) summary += (summary.empty() ? "" : ", ") + m + " " + show_value(m, *v);
  }
  if (!summary.empty()) std::cout << indent << "  " << summary << '\n';
}

ordered_json compare_eval_reports(const v1::EvalReport& a, const v1::EvalReport& b) {
  ordered_json out;
  out["suite"] = a.suite();
  out["a"] = a.model();
  out["b"] = b.model();
  ordered_json tasks = ordered_json::array();
  std::vector<std::string> names;
  for (const auto& t : a.tasks()) names.push_back(t.name());
  for (const auto& t : b.tasks()) {
    if (!find_task(a, t.name())) names.push_back(t.name());
  }
  for (const auto& name : names) {
    const v1::EvalTaskResult* ta = find_task(a, name);
    const v1::EvalTaskResult* tb = find_task(b, name);
    const std::string kind = ta ? ta->kind() : tb->kind();
    static const google::protobuf::Map<std::string, double> empty;
    const auto& ma = ta ? ta->metrics() : empty;
    const auto& mb = tb ? tb->metrics() : empty;
    ordered_json metrics = ordered_json::object();
    for (const auto& m : metric_names(kind, ma, &mb)) metrics[m] = pair_json(find(ma, m), find(mb, m));
    tasks.push_back({{"name", name}, {"kind", kind}, {"metrics", metrics}});
  }
  out["tasks"] = tasks;
  ordered_json summary = ordered_json::object();
  for (const auto& m : metric_names("summary", a.summary(), &b.summary())) {
    if (m == "zeroshot_tasks" || m == "retrieval_tasks") continue;
    summary[m] = pair_json(find(a.summary(), m), find(b.summary(), m));
  }
  out["summary"] = summary;
  return out;
}

void print_eval_comparison(const v1::EvalReport& a, const v1::EvalReport& b, const std::string& label_a,
                           const std::string& label_b, const std::string& indent) {
  const ordered_json c = compare_eval_reports(a, b);
  std::cout << indent << "suite " << a.suite() << ": " << label_a << " -> " << label_b << '\n';
  std::vector<std::vector<std::string>> rows;
  auto add = [&rows](const std::string& task, const std::string& metric, const ordered_json& v) {
    const std::string sa = v["a"].is_null() ? "-" : show_value(metric, v["a"].get<double>());
    const std::string sb = v["b"].is_null() ? "-" : show_value(metric, v["b"].get<double>());
    const std::string sd = v.contains("delta") ? show_delta(metric, v["delta"].get<double>()) : "-";
    rows.push_back({task, metric, sa, sb, sd});
  };
  for (const auto& t : c["tasks"]) {
    for (const auto& [metric, v] : t["metrics"].items()) add(t["name"].get<std::string>(), metric, v);
  }
  for (const auto& [metric, v] : c["summary"].items()) add("(suite)", metric, v);
  print_indented(table({"TASK", "METRIC", label_a, label_b, "DELTA"}, rows), indent + "  ");
}

}  // namespace refinery::client
