// The points of a sweep: every combination of its axes' values (the first
// axis varies slowest) applied to the shared JobSpec, each with the suffix
// its model's name gets ("-lambda_rafa-0.2-alpha-0.5").
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "refinery/v1/job.pb.h"

namespace refinery {

struct SweepGridPoint {
  std::map<std::string, std::string> values;  // field -> value
  v1::JobSpec spec;                            // the shared spec with the values set
  std::string name_suffix;
  std::string name_suffix_but_epochs;  // the suffix without its "-epochs-N" part
};

// One job of a sweep and the points it answers: (point index, epoch), epoch
// 0 where the job's result is the point's model.
struct SweepGridJob {
  v1::JobSpec spec;
  std::string name_suffix;
  std::vector<std::pair<size_t, int32_t>> points;
};

constexpr size_t kMaxSweepPoints = 256;

// INVALID_ARGUMENT naming the axis and value: no axes, an unknown field, a
// field that is not a hyper-parameter (kind, model, base_model, data, name,
// init, arch, eval_suite, extra), a field given twice, an empty or repeated
// value, a value that does not parse as the field's type, more than
// kMaxSweepPoints points.
std::vector<SweepGridPoint> expand_sweep(const v1::SweepSpec& spec);

// The jobs that answer the points: one per point, except that points which
// differ only in `epochs` share one job when `one_run_for_epochs(spec)` says
// its schedule allows it (a model at epoch E of a longer run is then the
// model of a run of E epochs). That job runs to the largest count, takes
// the smaller ones on the way (JobSpec.eval_at_epochs) and is named without
// the epochs part of the suffix. Jobs come in the order of their first point.
std::vector<SweepGridJob> plan_sweep_jobs(const std::vector<SweepGridPoint>& points,
                                          const std::function<bool(const v1::JobSpec&)>& one_run_for_epochs);

// "lambda_rafa=0.2, alpha=0.5"
std::string describe_sweep_point(const std::map<std::string, std::string>& values, const v1::SweepSpec& spec);

}  // namespace refinery
