#include "refinery/job_json.h"

#include "refinery/proto_json.h"

namespace refinery {
namespace {

constexpr const char* kStatePrefix = "JOB_STATE_";

std::string strip_state_prefix(const std::string& name) {
  const std::string prefix = kStatePrefix;
  return name.compare(0, prefix.size(), prefix) == 0 ? name.substr(prefix.size()) : name;
}

void strip_state_prefix(nlohmann::ordered_json& value) {
  if (value.is_string()) value = strip_state_prefix(value.get<std::string>());
}

}  // namespace

std::string job_state_name(v1::JobState state) {
  const std::string name = v1::JobState_Name(state);
  return name.empty() ? "STATE_" + std::to_string(static_cast<int>(state)) : strip_state_prefix(name);
}

nlohmann::ordered_json job_to_json(const v1::Job& job) {
  auto j = proto_to_json(job);
  strip_state_prefix(j["state"]);
  return j;
}

nlohmann::ordered_json job_event_to_json(const v1::JobEvent& event) {
  auto j = proto_to_json(event);
  if (j.contains("state")) strip_state_prefix(j["state"]["state"]);
  return j;
}

}  // namespace refinery
