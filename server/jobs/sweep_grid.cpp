#include "server/jobs/sweep_grid.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "core/base/error.h"

namespace refinery {
namespace {

using google::protobuf::FieldDescriptor;

const std::set<std::string> kNotSweepable = {"kind", "model", "base_model", "data", "name",
                                             "init", "arch",  "eval_suite", "extra"};

// A model name allows [A-Za-z0-9._-]: anything else in a value becomes '_'.
std::string name_safe(const std::string& value) {
  std::string out = value;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  }
  return out;
}

// The value as the JSON proto3 reads for this field: numbers may be strings.
v1::JobSpec parse_value(const FieldDescriptor* f, const std::string& value) {
  nlohmann::json j = nlohmann::json::object();
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL) {
    if (value != "true" && value != "false") {
      throw invalid_argument("sweep axis " + f->name() + ": '" + value + "' is not true or false");
    }
    j[f->json_name()] = value == "true";
  } else {
    j[f->json_name()] = value;
  }
  v1::JobSpec out;
  const auto status = google::protobuf::util::JsonStringToMessage(j.dump(), &out);
  if (!status.ok()) {
    throw invalid_argument("sweep axis " + f->name() + ": '" + value + "' is not a valid " + f->cpp_type_name());
  }
  return out;
}

}  // namespace

std::vector<SweepGridPoint> expand_sweep(const v1::SweepSpec& spec) {
  if (spec.axes().empty()) throw invalid_argument("a sweep needs at least one axis (--grid FIELD=V1,V2,...)");
  const auto* d = v1::JobSpec::descriptor();
  std::set<std::string> fields;
  size_t points = 1;
  std::vector<std::vector<v1::JobSpec>> parsed;
  for (const auto& axis : spec.axes()) {
    const FieldDescriptor* f = d->FindFieldByName(axis.field());
    if (f == nullptr || f->is_repeated() || f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      throw invalid_argument("sweep axis '" + axis.field() + "' is not a JobSpec hyper-parameter (e.g. lambda_rafa, "
                             "lambda_hycd, alpha, epochs, lr, method)");
    }
    if (kNotSweepable.count(axis.field())) {
      throw invalid_argument("sweep axis '" + axis.field() + "' cannot vary: a sweep refines one base on one data set");
    }
    if (!fields.insert(axis.field()).second) throw invalid_argument("sweep axis '" + axis.field() + "' is given twice");
    if (axis.values().empty()) throw invalid_argument("sweep axis '" + axis.field() + "' has no values");
    std::set<std::string> seen;
    std::vector<v1::JobSpec> values;
    for (const auto& v : axis.values()) {
      if (v.empty()) throw invalid_argument("sweep axis '" + axis.field() + "' has an empty value");
      if (!seen.insert(v).second) throw invalid_argument("sweep axis '" + axis.field() + "' repeats value '" + v + "'");
      values.push_back(parse_value(f, v));
    }
    parsed.push_back(std::move(values));
    points *= static_cast<size_t>(axis.values_size());
    if (points > kMaxSweepPoints) {
      throw invalid_argument("the sweep has more than " + std::to_string(kMaxSweepPoints) + " points");
    }
  }
  std::vector<SweepGridPoint> out;
  std::vector<int> index(static_cast<size_t>(spec.axes_size()), 0);
  for (size_t p = 0; p < points; ++p) {
    SweepGridPoint point;
    point.spec = spec.job();
    for (int a = 0; a < spec.axes_size(); ++a) {
      const auto& axis = spec.axes(a);
      const std::string& value = axis.values(index[static_cast<size_t>(a)]);
      point.values[axis.field()] = value;
      point.spec.MergeFrom(parsed[static_cast<size_t>(a)][static_cast<size_t>(index[static_cast<size_t>(a)])]);
      point.name_suffix += "-" + axis.field() + "-" + name_safe(value);
      if (axis.field() != "epochs") point.name_suffix_but_epochs += "-" + axis.field() + "-" + name_safe(value);
    }
    out.push_back(std::move(point));
    for (int a = spec.axes_size() - 1; a >= 0; --a) {  // the last axis varies fastest
      if (++index[static_cast<size_t>(a)] < spec.axes(a).values_size()) break;
      index[static_cast<size_t>(a)] = 0;
    }
  }
  return out;
}

std::vector<SweepGridJob> plan_sweep_jobs(const std::vector<SweepGridPoint>& points,
                                          const std::function<bool(const v1::JobSpec&)>& one_run_for_epochs) {
  std::vector<SweepGridJob> jobs;
  std::map<std::map<std::string, std::string>, size_t> job_of_rest;  // values but epochs -> job
  for (size_t i = 0; i < points.size(); ++i) {
    const SweepGridPoint& p = points[i];
    if (!p.values.count("epochs") || !one_run_for_epochs(p.spec)) {
      jobs.push_back({p.spec, p.name_suffix, {{i, 0}}});
      continue;
    }
    std::map<std::string, std::string> rest = p.values;
    rest.erase("epochs");
    auto [it, fresh] = job_of_rest.emplace(rest, jobs.size());
    if (fresh) jobs.push_back({p.spec, p.name_suffix_but_epochs, {}});
    SweepGridJob& job = jobs[it->second];
    job.points.emplace_back(i, p.spec.epochs());
    if (p.spec.epochs() > job.spec.epochs()) job.spec = p.spec;
  }
  for (SweepGridJob& job : jobs) {
    if (job.points.size() == 1 && job.points[0].second == 0) continue;
    job.spec.clear_eval_at_epochs();
    std::vector<int32_t> at;
    for (auto& [index, epoch] : job.points) {
      if (epoch == job.spec.epochs()) {
        epoch = 0;  // the job's result
      } else {
        at.push_back(epoch);
      }
    }
    std::sort(at.begin(), at.end());
    for (int32_t e : at) job.spec.add_eval_at_epochs(e);
  }
  return jobs;
}

std::string describe_sweep_point(const std::map<std::string, std::string>& values, const v1::SweepSpec& spec) {
  std::string out;
  for (const auto& axis : spec.axes()) {
    auto it = values.find(axis.field());
    if (it != values.end()) out += (out.empty() ? "" : ", ") + axis.field() + "=" + it->second;
  }
  return out;
}

}  // namespace refinery
