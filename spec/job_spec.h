// A job's spec as the user sent it (proto, unset fields = METHOD.md
// defaults) <-> the core's RefineOptions. Submit stores the spec with every
// default filled in, so `jobs show` tells exactly what ran.
#pragma once
#include <string>
#include <vector>
#include "core/train/refine_options.h"
#include "refinery/v1/job.pb.h"

namespace refinery {

// Fills unset fields with the defaults; INVALID_ARGUMENT naming the field for
// a bad value or an unknown `extra` key.
v1::JobSpec with_defaults(const v1::JobSpec& spec, int64_t default_checkpoint_every, bool cpu);
// Options for a spec that went through with_defaults().
RefineOptions refine_options_from_spec(const v1::JobSpec& spec);
// "vit-b-32" + clip-refine -> "vit-b-32-refined"; other methods append their name.
std::string derived_model_name(const std::string& base_name, const std::string& method);

// "cuda:0, cuda:1" -> {"cuda:0", "cuda:1"} (JobSpec.devices).
std::vector<std::string> split_devices(const std::string& devices);

// The model a refine job takes at the end of epoch E (JobSpec.eval_at_epochs):
// "NAME-epoch-E".
std::string epoch_model_name(const std::string& name, int32_t epoch);

}  // namespace refinery
