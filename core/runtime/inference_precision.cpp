#include "core/runtime/inference_precision.h"

#include <c10/core/Device.h>

#include <fstream>
#include <sstream>

#include "core/base/error.h"

namespace refinery {

InferencePrecision parse_inference_precision(const std::string& name) {
  if (name == "fp32") return InferencePrecision::kFp32;
  if (name == "bf16") return InferencePrecision::kBf16;
  if (name == "int8") {
    throw unimplemented("precision 'int8' (dynamic quantization of the linear layers) is not built yet; use fp32 or bf16");
  }
  throw invalid_argument("unknown precision '" + name + "' (fp32 or bf16)");
}

const char* inference_precision_name(InferencePrecision precision) {
  return precision == InferencePrecision::kBf16 ? "bf16" : "fp32";
}

bool cpu_flags_have_native_bf16(const std::string& flags_line) {
  std::istringstream words(flags_line);
  std::string w;
  while (words >> w) {
    if (w == "avx512_bf16" || w == "amx_bf16") return true;
  }
  return false;
}

bool cpu_has_native_bf16() {
  // Read once per process: every Embedder built with bf16 asks.
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      // Every core lists the same flags: the first line decides.
      if (line.rfind("flags", 0) == 0) return cpu_flags_have_native_bf16(line);
    }
    return false;
  }();
  return has;
}

void check_inference_precision(InferencePrecision precision, const c10::Device& device) {
  if (precision != InferencePrecision::kBf16 || !device.is_cpu()) return;
  if (!cpu_has_native_bf16()) {
    throw failed_precondition(
        "precision bf16 needs a CPU with AVX512-BF16 or AMX-BF16 (this one has neither in /proc/cpuinfo, and "
        "emulated bf16 is slower than fp32); use fp32");
  }
}

}  // namespace refinery
