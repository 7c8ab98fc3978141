// Process-wide LibTorch setup: thread counts and device choice. LibTorch's
// default thread count is not to be trusted (it came out as 1 on a 2-core
// machine), so every binary sets it explicitly and logs what it got.
#pragma once

#include <string>

namespace c10 {
struct Device;
}

namespace refinery {

struct RuntimeOptions {
  int threads = 0;              // intra-op threads; 0 = all online cores
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
};

struct RuntimeInfo {
  std::string torch_version;
  std::string blas_library;  // the shared object that provides sgemm_, if any
  int threads = 0;
  bool cuda_available = false;
  int cuda_devices = 0;
  std::string summary() const;  // one line for the start-up log
};

// Sets thread counts (LibTorch and, when present, OpenBLAS) and reports.
RuntimeInfo configure_runtime(const RuntimeOptions& options);
RuntimeInfo runtime_info();

// "auto" -> cuda when available, else cpu. Throws invalid_argument for a
// malformed or unavailable device.
c10::Device resolve_device(const std::string& spec);

}  // namespace refinery
