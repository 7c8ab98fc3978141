// The points of a sweep: every combination of its axes' values (the first
// axis varies slowest) applied to the shared JobSpec, each with the suffix
// its model's name gets ("-lambda_rafa-0.2-alpha-0.5").
#pragma once

#include <map>
#include <string>
#include <vector>

#include "refinery/v1/job.pb.h"

namespace refinery {

struct SweepGridPoint {
  std::map<std::string, std::string> values;  // field -> value
  v1::JobSpec spec;                            // the shared spec with the values set
  std::string name_suffix;
};

constexpr size_t kMaxSweepPoints = 256;

// INVALID_ARGUMENT naming the axis and value: no axes, an unknown field, a
// field that is not a hyper-parameter (kind, model, base_model, data, name,
// init, arch, eval_suite, extra), a field given twice, an empty or repeated
// value, a value that does not parse as the field's type, more than
// kMaxSweepPoints points.
std::vector<SweepGridPoint> expand_sweep(const v1::SweepSpec& spec);

// "lambda_rafa=0.2, alpha=0.5"
std::string describe_sweep_point(const std::map<std::string, std::string>& values, const v1::SweepSpec& spec);

}  // namespace refinery
