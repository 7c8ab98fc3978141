// How `refinery` shows evaluation reports (refinery.v1.EvalReport): one
// report as a table per task kind, and two reports of one suite side by side
// with their deltas (`eval compare`, and `models show` of a refined model:
// its base before refining against the result). Accuracies print as
// percentages and their deltas as percentage points; the modality gap,
// alignment and uniformity as they are. In JSON every value stays a fraction.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "refinery/v1/eval.pb.h"

namespace refinery::client {

// The metrics of a task kind in the order they are shown.
const std::vector<std::string>& eval_metric_order(const std::string& kind);

// Whether a metric is a fraction shown as a percentage (accuracies, recalls),
// rather than a gap, a loss, a count or a distribution statistic.
bool is_accuracy_metric(const std::string& metric);

void print_eval_report(const v1::EvalReport& report, const std::string& indent = "");

// Rows of tasks (by name, in a's order, then b's own) and the summary:
// {"suite", "a", "b", "tasks": [{"name", "kind", "metrics": {M: {"a", "b",
// "delta"}}}], "summary": {M: {"a", "b", "delta"}}}; a side that lacks a
// value has null there and no delta.
nlohmann::ordered_json compare_eval_reports(const v1::EvalReport& a, const v1::EvalReport& b);
void print_eval_comparison(const v1::EvalReport& a, const v1::EvalReport& b, const std::string& label_a,
                           const std::string& label_b, const std::string& indent = "");

}  // namespace refinery::client
