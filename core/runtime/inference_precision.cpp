#include "core/runtime/inference_precision.h"

#include <c10/core/Device.h>

#include <fstream>
#include <initializer_list>
#include <sstream>

#include "core/base/error.h"
#include "core/runtime/int8_linear.h"

namespace refinery {

InferencePrecision parse_inference_precision(const std::string& name) {
  if (name == "fp32") return InferencePrecision::kFp32;
  if (name == "bf16") return InferencePrecision::kBf16;
  if (name == "int8") return InferencePrecision::kInt8;
  throw invalid_argument("unknown precision '" + name + "' (fp32, bf16 or int8)");
}

const char* inference_precision_name(InferencePrecision precision) {
  switch (precision) {
    case InferencePrecision::kBf16: return "bf16";
    case InferencePrecision::kInt8: return "int8";
    case InferencePrecision::kFp32: break;
  }
  return "fp32";
}

namespace {

bool flags_have_any(const std::string& flags_line, std::initializer_list<const char*> wanted) {
  std::istringstream words(flags_line);
  std::string w;
  while (words >> w) {
    for (const char* x : wanted) {
      if (w == x) return true;
    }
  }
  return false;
}

// /proc/cpuinfo's first "flags" line, read once per process (every core
// lists the same flags).
const std::string& cpu_flags() {
  static const std::string flags = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) == 0) return line;
    }
    return std::string();
  }();
  return flags;
}

}  // namespace

bool cpu_flags_have_native_bf16(const std::string& flags_line) {
  return flags_have_any(flags_line, {"avx512_bf16", "amx_bf16"});
}
bool cpu_has_native_bf16() { return cpu_flags_have_native_bf16(cpu_flags()); }

bool cpu_flags_have_int8_dot_products(const std::string& flags_line) {
  return flags_have_any(flags_line, {"avx512_vnni", "avx_vnni", "amx_int8"});
}
bool cpu_has_int8_dot_products() { return cpu_flags_have_int8_dot_products(cpu_flags()); }

void check_int8_engine() {
  if (int8_quantized_engine().empty()) {
    throw failed_precondition("precision int8 needs LibTorch's x86, FBGEMM or oneDNN quantized engine, and this "
                              "build has none of them; use fp32");
  }
}

void check_inference_precision(InferencePrecision precision, const c10::Device& device) {
  if (precision == InferencePrecision::kBf16 && device.is_cpu() && !cpu_has_native_bf16()) {
    throw failed_precondition(
        "precision bf16 needs a CPU with AVX512-BF16 or AMX-BF16 (this one has neither in /proc/cpuinfo, and "
        "emulated bf16 is slower than fp32); use fp32");
  }
  if (precision != InferencePrecision::kInt8) return;
  if (!device.is_cpu()) {
    throw failed_precondition("precision int8 (dynamic quantization) runs on CPUs only, not on " + device.str() +
                              "; use bf16 or fp32 there");
  }
  check_int8_engine();
  if (!cpu_has_int8_dot_products()) {
    throw failed_precondition(
        "precision int8 needs a CPU with int8 dot products (AVX512-VNNI, AVX-VNNI or AMX-INT8; this one has none "
        "in /proc/cpuinfo, where int8 sums can saturate and gain little); use fp32");
  }
}

}  // namespace refinery
