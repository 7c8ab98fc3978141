// RaFA (random feature alignment), METHOD.md: pull the student's raw image and
// text features towards a random sample of a fixed prior, redrawn every step:
//   L_RaFA = mse(f_i, z_i) + mse(f_t, z_t),  mse = mean over all B*D elements,
// with z_i == z_t (one row per pair) in the paper setting.
//
// The prior samples are counter-based: a step's noise is a pure function of
// (seed, step, rows, dim, options), so a resumed job redraws exactly the same
// noise without saving any RNG state, and the values do not depend on the
// LibTorch version, the thread count or the device.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <utility>

#include "core/train/objective_options.h"

namespace refinery {

// Prior samples [rows, dim] for one step, float32, drawn on the CPU from a
// counter-based generator keyed by (seed, step) only, then moved to `device`.
// Returns {z_image, z_text}: the same tensor twice when `shared`; otherwise
// z_image is the shared draw and z_text the next rows*dim values of the stream.
// Normal prior: N(mu, sigma^2). Uniform prior: mean mu, std sigma, i.e.
// U(mu - sqrt(3) sigma, mu + sqrt(3) sigma).
std::pair<at::Tensor, at::Tensor> sample_rafa_prior(const RafaOptions& options, int64_t rows, int64_t dim, uint64_t seed,
                                                    int64_t step, c10::Device device);

// mse(f_image, z_image) + mse(f_text, z_text), each the mean over all B*D
// elements. Computed in float32 whatever the inputs' dtype; the z's carry no
// gradient. Shapes must match pairwise ([B, D]), else INVALID_ARGUMENT.
at::Tensor rafa_loss(const at::Tensor& f_image, const at::Tensor& f_text, const at::Tensor& z_image,
                     const at::Tensor& z_text);

}  // namespace refinery
