#include "core/runtime/inference_precision.h"

#include <c10/core/Device.h>
#include <gtest/gtest.h>

#include "core/base/error.h"
#include "core/runtime/int8_linear.h"
#include "support/errors.h"

namespace refinery {
namespace {

TEST(InferencePrecisionTest, ParsesEachNameAndNamesWhatItRefuses) {
  for (const std::string name : {"fp32", "bf16", "int8"}) {
    EXPECT_EQ(inference_precision_name(parse_inference_precision(name)), name);
  }
  EXPECT_EQ(parse_inference_precision("int8"), InferencePrecision::kInt8);
  testing::expect_invalid([] { parse_inference_precision("fp16"); }, {"'fp16'"});
}

TEST(InferencePrecisionTest, Bf16NeedsNativeBf16OnACpu) {
  // Flags as /proc/cpuinfo lists them: this project's CI machine (AMD EPYC
  // with AVX512-BF16), a Sapphire Rapids (AMX), and an AVX2-only laptop.
  EXPECT_TRUE(cpu_flags_have_native_bf16("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni"));
  EXPECT_TRUE(cpu_flags_have_native_bf16("flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8"));
  EXPECT_FALSE(cpu_flags_have_native_bf16("flags\t\t: fpu sse2 avx avx2 fma"));
  EXPECT_FALSE(cpu_flags_have_native_bf16("flags\t\t: avx512_bf16x"));  // whole words only
  // This machine: accepted where it has the flag, refused (saying why) where not.
  const c10::Device cpu(c10::DeviceType::CPU);
  EXPECT_NO_THROW(check_inference_precision(InferencePrecision::kFp32, cpu));
  if (cpu_has_native_bf16()) {
    EXPECT_NO_THROW(check_inference_precision(InferencePrecision::kBf16, cpu));
  } else {
    const std::string what = testing::expect_error([&] { check_inference_precision(InferencePrecision::kBf16, cpu); },
                                                   ErrorCode::kFailedPrecondition).what();
    EXPECT_NE(what.find("AVX512-BF16"), std::string::npos) << what;
  }
}

TEST(InferencePrecisionTest, Int8NeedsACpuWithInt8DotProductsAndAQuantizedEngine) {
  EXPECT_TRUE(cpu_flags_have_int8_dot_products("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni"));
  EXPECT_TRUE(cpu_flags_have_int8_dot_products("flags\t\t: fpu avx2 avx_vnni"));        // Alder Lake
  EXPECT_TRUE(cpu_flags_have_int8_dot_products("flags\t\t: fpu avx512f amx_tile amx_int8"));
  EXPECT_FALSE(cpu_flags_have_int8_dot_products("flags\t\t: fpu sse2 avx avx2 fma"));
  EXPECT_FALSE(cpu_flags_have_int8_dot_products("flags\t\t: avx512_vnnix"));
  // Never on a GPU, whatever the CPU.
  const std::string on_cuda =
      testing::expect_error([] { check_inference_precision(InferencePrecision::kInt8, c10::Device(c10::DeviceType::CUDA, 0)); },
                            ErrorCode::kFailedPrecondition).what();
  EXPECT_NE(on_cuda.find("CPUs only"), std::string::npos) << on_cuda;
  const c10::Device cpu(c10::DeviceType::CPU);
  if (cpu_has_int8_dot_products() && !int8_quantized_engine().empty()) {
    EXPECT_NO_THROW(check_inference_precision(InferencePrecision::kInt8, cpu));
  } else {
    testing::expect_error([&] { check_inference_precision(InferencePrecision::kInt8, cpu); },
                          ErrorCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace refinery
