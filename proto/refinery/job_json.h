// Jobs and their events as JSON: proto_to_json with job states by their
// short names ("RUNNING", not "JOB_STATE_RUNNING"). What `refinery jobs
// show|watch --json` prints and `refinery-model refine --events` writes, so a
// script reads both the same way.
#pragma once

#include <nlohmann/json.hpp>

#include "refinery/v1/job.pb.h"

namespace refinery {

nlohmann::ordered_json job_to_json(const v1::Job& job);
nlohmann::ordered_json job_event_to_json(const v1::JobEvent& event);
// "RUNNING" for JOB_STATE_RUNNING ("STATE_<n>" for a number without a name).
std::string job_state_name(v1::JobState state);

}  // namespace refinery
