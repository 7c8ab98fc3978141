#include "core/runtime/inference_precision.h"

#include <c10/core/Device.h>
#include <gtest/gtest.h>

#include "core/base/error.h"

namespace refinery {
namespace {

TEST(InferencePrecisionTest, ParsesFp32AndBf16AndNamesWhatItRefuses) {
  EXPECT_EQ(parse_inference_precision("fp32"), InferencePrecision::kFp32);
  EXPECT_EQ(parse_inference_precision("bf16"), InferencePrecision::kBf16);
  EXPECT_STREQ(inference_precision_name(InferencePrecision::kBf16), "bf16");
  try {
    parse_inference_precision("fp16");
    FAIL() << "fp16 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("'fp16'"), std::string::npos) << e.what();
  }
  try {
    parse_inference_precision("int8");
    FAIL() << "int8 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnimplemented);
  }
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
    try {
      check_inference_precision(InferencePrecision::kBf16, cpu);
      FAIL() << "bf16 accepted without native bf16";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition);
      EXPECT_NE(std::string(e.what()).find("AVX512-BF16"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace refinery
