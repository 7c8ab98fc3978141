// The number format of a forward pass at inference:
// - fp32;
// - bf16 through autocast (weights stay fp32; matmuls and convolutions run
//   in bf16 on oneDNN or cuBLAS, LayerNorm, softmax and the residual stream
//   in fp32). Measured on 2 cores with AVX512-BF16, ViT-B/32, batch 32:
//   images 21.7 -> 60.7/s and texts 27.5 -> 79.6/s, the lowest cosine
//   against fp32 0.99999 and 0.99996 (`refinery-model bench --precision`);
// - int8: dynamic quantization of the transformers' linear layers
//   (int8_linear.h; ClipModelImpl::quantize_int8), CPU only; the patch
//   convolution, attention scores, projections, LayerNorm and the residual
//   stream stay fp32.
#pragma once

#include <string>

namespace c10 {
struct Device;
}

namespace refinery {

enum class InferencePrecision { kFp32, kBf16, kInt8 };

// "fp32", "bf16" or "int8"; anything else is invalid_argument naming it.
InferencePrecision parse_inference_precision(const std::string& name);
const char* inference_precision_name(InferencePrecision precision);

// Throws failed_precondition saying why where `device` cannot run it
// usefully: bf16 on a CPU without AVX512-BF16 or AMX-BF16, where LibTorch
// would emulate it more slowly than fp32; int8 on anything but a CPU, on a
// LibTorch without an x86 quantized engine, or on a CPU without int8 dot
// products (AVX512-VNNI, AVX-VNNI or AMX-INT8: without them the uint8 x
// int8 pair sums can saturate, and the speed-up is small).
void check_inference_precision(InferencePrecision precision, const c10::Device& device);
// The engine part of that: failed_precondition where this LibTorch build has
// no quantized engine an int8 layer can pack for (int8_linear.h).
void check_int8_engine();

// Whether this CPU has native bf16 dot products (avx512_bf16 or amx_bf16 in
// /proc/cpuinfo's flags), and the same for one "flags : ..." line.
bool cpu_has_native_bf16();
bool cpu_flags_have_native_bf16(const std::string& flags_line);
// The same for int8 dot products (avx512_vnni, avx_vnni or amx_int8).
bool cpu_has_int8_dot_products();
bool cpu_flags_have_int8_dot_products(const std::string& flags_line);

}  // namespace refinery
