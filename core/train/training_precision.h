// Whether a device can train in a precision, found out by trying: one
// forward and backward of a small CLIP under autocast (the ops a refine step
// runs). Jobs ask at submit, so that a precision the device cannot run is
// refused then, naming the device, rather than failing mid-job with a raw
// library error. The answer is cached per device.
#pragma once

#include <c10/core/Device.h>

#include "core/train/refine_options.h"

namespace refinery {

// Throws invalid_argument ("precision bf16 is not available on cpu: ...")
// when `device` cannot train in `precision`. fp32 always can.
void check_training_precision(TrainingPrecision precision, const c10::Device& device);

}  // namespace refinery
