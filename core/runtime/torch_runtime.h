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

// For a process whose cores are shared between forward passes and other
// work (a server's decoding and RPCs): makes OpenMP's idle threads sleep
// instead of spinning. libgomp reads OMP_WAIT_POLICY once, when it is
// loaded, so where it is unset this sets it to PASSIVE and executes the
// program again (/proc/self/exe, same arguments); it returns only in the
// new image, or where OMP_WAIT_POLICY was already set, or if exec failed.
// Call first thing in main, before any thread starts. Measured in refineryd
// under 32 callers on 2 cores: spinning took 27% of all CPU samples with a
// tiny model; passive served 1753 calls/s against 1457.
void exec_with_passive_openmp(char** argv);

// Sets thread counts (LibTorch and, when present, OpenBLAS) and reports.
RuntimeInfo configure_runtime(const RuntimeOptions& options);
RuntimeInfo runtime_info();

// "auto" -> cuda when available, else cpu. Throws invalid_argument for a
// malformed or unavailable device.
c10::Device resolve_device(const std::string& spec);

}  // namespace refinery
