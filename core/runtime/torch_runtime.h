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
  // Keep freed heap memory for reuse instead of returning it to the kernel.
  // Activations are large and short-lived: with glibc's defaults every one is
  // a fresh mmap whose page faults cost as much as the math (measured: a
  // 20 MB elementwise op 33 ms cold vs 0.6 ms warm; ViT-B/32 forward ~2x).
  bool retain_freed_memory = true;
  size_t retained_memory_limit = size_t{1} << 30;  // freed bytes kept at most (heap top trim threshold)
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

// The calling thread's LibTorch parallel regions (OpenMP, and the GEMMs of
// the OpenMP build of OpenBLAS, which follow the caller's count) use
// `threads` threads from now on; other threads keep theirs. For forward
// passes that run side by side, each on its share of the cores. Returns
// false where LibTorch has no OpenMP to set it with (nothing changes then).
bool set_this_threads_intra_op_threads(int threads);

// "auto" -> cuda when available, else cpu. Throws invalid_argument for a
// malformed or unavailable device.
c10::Device resolve_device(const std::string& spec);

}  // namespace refinery
