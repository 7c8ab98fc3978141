// A linear layer's weight packed for int8 dynamic quantization on the CPU:
// the C++ counterpart of what torch.ao.quantization.quantize_dynamic does to
// one nn.Linear. The weight is quantized once, per output channel,
// symmetric int8 (scale = max |w| of the row / 127, zero point 0) and packed
// for the CPU quantized engine (x86 or FBGEMM on LibTorch 2.x, oneDNN on
// Debian's 1.13). Each call quantizes its input per tensor to uint8 from the
// input's own range, multiplies in int8 with int32 sums (VNNI) and returns
// fp32 plus the fp32 bias.
//
// Per tensor means that a row's result depends slightly on the other rows
// of the same call (their range sets the input scale): an item embedded in
// a batch differs from the same item embedded alone by about as much as
// int8 differs from fp32.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

namespace refinery {

// The quantized engine int8 layers pack for ("x86", "fbgemm" or "onednn",
// in that order of preference), or "" when this LibTorch build has none of
// them (QNNPACK, for ARM, is not used: on x86 it is slower than fp32).
std::string int8_quantized_engine();

class Int8Linear {
 public:
  // weight [out, in] float, bias [out] float or undefined. Throws
  // failed_precondition when this build has no usable quantized engine.
  Int8Linear(const at::Tensor& weight, const at::Tensor& bias);

  // x [..., in] float -> [..., out] float.
  at::Tensor forward(const at::Tensor& x) const;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  // The packed weight, scales and bias.
  int64_t bytes() const { return bytes_; }

 private:
  struct Packed;
  std::shared_ptr<const Packed> packed_;
  int64_t in_ = 0, out_ = 0, bytes_ = 0;
};

}  // namespace refinery
