// The trainer's reports (core/refine/refine_trainer.h) as the JobEvents that
// `refinery jobs watch` streams. A loss the method does not use is 0 there
// (NaN in the report).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/refine/refine_trainer.h"
#include "refinery/v1/job.pb.h"

namespace refinery {

v1::JobEvent step_event(const StepReport& report);
v1::JobEvent eval_event(int64_t step, const std::map<std::string, double>& metrics);
v1::JobEvent checkpoint_event(const TrainingCheckpointInfo& written);
v1::JobEvent state_event(v1::JobState state, const std::string& message);
v1::JobEvent result_event(const std::string& model, int32_t epoch = 0);

// The report a step event was made from (losses the event has as 0 stay 0).
StepReport step_report(const v1::StepEvent& event);

}  // namespace refinery
