#include "core/train/rafa_loss.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "core/base/error.h"
#include "core/runtime/tensor_shape.h"

namespace refinery {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

// SplitMix64's output function (Steele, Lea, Flood 2014): a bijection on 64 bits.
uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The stream key of one step: distinct steps of one seed give distinct keys
// (mix64 is a bijection), and the xor with a mixed seed decorrelates seeds.
uint64_t step_key(uint64_t seed, int64_t step) { return mix64(mix64(seed + kGolden) ^ static_cast<uint64_t>(step)); }

// Value `counter` of the SplitMix64 stream that starts at `key`.
uint64_t stream_bits(uint64_t key, uint64_t counter) { return mix64(key + (counter + 1) * kGolden); }

// Uniform double in [0, 1) from the top 53 bits.
double unit_interval(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

// Fills out[0..n) with standard draws of the prior (mean 0, std 1), using
// stream values [first, first + n) for the uniform prior and [2 first, ...)
// pairs (Box-Muller) for the normal one.
void fill_standard(RafaPrior prior, uint64_t key, uint64_t first, int64_t n, float* out, double mu, double sigma) {
  if (prior == RafaPrior::kUniform) {
    const double half_width = std::sqrt(3.0);
    for (int64_t k = 0; k < n; ++k) {
      const double u = unit_interval(stream_bits(key, first + static_cast<uint64_t>(k)));
      out[k] = static_cast<float>(mu + sigma * half_width * (2.0 * u - 1.0));
    }
    return;
  }
  // Box-Muller on pairs; element k uses pair (first + k) / 2 of the stream so
  // that any prefix of the stream is reproducible on its own.
  const double two_pi = 6.283185307179586476925286766559;
  for (int64_t k = 0; k < n; ++k) {
    const uint64_t index = first + static_cast<uint64_t>(k);
    const uint64_t pair = index / 2;
    const double u1 = (static_cast<double>(stream_bits(key, 2 * pair) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = unit_interval(stream_bits(key, 2 * pair + 1));
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double z = (index % 2 == 0) ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2);
    out[k] = static_cast<float>(mu + sigma * z);
  }
}

void check_pair(const at::Tensor& f, const at::Tensor& z, const char* f_name, const char* z_name) {
  if (!f.defined()) throw invalid_argument(std::string("rafa_loss: ") + f_name + " is undefined");
  if (!z.defined()) throw invalid_argument(std::string("rafa_loss: ") + z_name + " is undefined");
  if (f.dim() != 2) throw invalid_argument(std::string("rafa_loss: ") + f_name + " must be [B, D], got " + shape_of(f));
  if (!f.sizes().equals(z.sizes())) {
    throw invalid_argument(std::string("rafa_loss: ") + f_name + " " + shape_of(f) + " and " + z_name + " " +
                           shape_of(z) + " differ in shape");
  }
}

}  // namespace

std::pair<at::Tensor, at::Tensor> sample_rafa_prior(const RafaOptions& options, int64_t rows, int64_t dim, uint64_t seed,
                                                    int64_t step, c10::Device device) {
  validate_rafa_options(options);
  if (rows < 0) throw invalid_argument("sample_rafa_prior: rows must be >= 0, got " + std::to_string(rows));
  if (dim <= 0) throw invalid_argument("sample_rafa_prior: dim must be > 0, got " + std::to_string(dim));
  if (step < 0) throw invalid_argument("sample_rafa_prior: step must be >= 0, got " + std::to_string(step));

  const uint64_t key = step_key(seed, step);
  const int64_t n = rows * dim;
  const auto cpu_float = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
  at::Tensor z_image = torch::empty({rows, dim}, cpu_float);
  fill_standard(options.prior, key, 0, n, z_image.data_ptr<float>(), options.mu, options.sigma);
  at::Tensor z_text = z_image;
  if (!options.shared) {
    z_text = torch::empty({rows, dim}, cpu_float);
    fill_standard(options.prior, key, static_cast<uint64_t>(n), n, z_text.data_ptr<float>(), options.mu,
                  options.sigma);
  }
  if (device != torch::Device(torch::kCPU)) {
    z_image = z_image.to(device);
    z_text = options.shared ? z_image : z_text.to(device);
  }
  return {z_image, z_text};
}

at::Tensor rafa_loss(const at::Tensor& f_image, const at::Tensor& f_text, const at::Tensor& z_image,
                     const at::Tensor& z_text) {
  check_pair(f_image, z_image, "f_image", "z_image");
  check_pair(f_text, z_text, "f_text", "z_text");
  if (f_image.size(1) != f_text.size(1)) {
    throw invalid_argument("rafa_loss: f_image " + shape_of(f_image) + " and f_text " + shape_of(f_text) +
                           " differ in feature dimension");
  }
  auto mse = [](const at::Tensor& f, const at::Tensor& z) {
    const at::Tensor f32 = f.to(torch::kFloat32);
    const at::Tensor z32 = z.detach().to(f32.device(), torch::kFloat32);
    return (f32 - z32).pow(2).mean();
  };
  return mse(f_image, z_image) + mse(f_text, z_text);
}

}  // namespace refinery
