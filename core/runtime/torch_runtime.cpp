#include "core/runtime/torch_runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "core/base/error.h"

namespace refinery {
namespace {

std::string blas_library() {
  // Which library resolves the Fortran sgemm symbol LibTorch calls: on
  // Debian this follows the libblas.so.3 alternative (reference BLAS is
  // ~28x slower than OpenBLAS for fp32 matmul).
  void* sym = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info{};
  if (sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr) {
    std::string name = info.dli_fname;
    // Which threading OpenBLAS was built with: its pthreads build runs a pool
    // of its own beside LibTorch's OpenMP one (see RefineryDependencies.cmake).
    using GetParallel = int (*)();
    if (auto parallel = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"))) {
      const int p = parallel();
      name += p == 2 ? " (OpenBLAS, OpenMP)" : p == 1 ? " (OpenBLAS, pthreads)" : " (OpenBLAS, single-threaded)";
    } else if (dlsym(RTLD_DEFAULT, "openblas_get_config") != nullptr) {
      name += " (OpenBLAS)";
    }
    return name;
  }
  return "none found (LibTorch's own kernels)";
}

int online_cores() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

std::string RuntimeInfo::summary() const {
  std::string s = "LibTorch " + torch_version + ", " + std::to_string(threads) + " threads";
  if (const char* policy = std::getenv("OMP_WAIT_POLICY")) s += std::string(" (OpenMP wait: ") + policy + ")";
  s += ", BLAS: " + blas_library;
  s += cuda_available ? ", CUDA devices: " + std::to_string(cuda_devices) : ", no CUDA";
  return s;
}

RuntimeInfo configure_runtime(const RuntimeOptions& options) {
  if (options.threads < 0) throw invalid_argument("--threads must be >= 0, got " + std::to_string(options.threads));
  const int threads = options.threads > 0 ? options.threads : online_cores();
  if (options.retain_freed_memory) {
    // Serve every allocation from the heap (no per-allocation mmap), and only
    // give memory back once more than the limit sits free at the heap top.
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<size_t>(options.retained_memory_limit, INT32_MAX)));
  }
  at::set_num_threads(threads);
  // OpenBLAS's own thread count (its pthreads build keeps a pool of its own;
  // its OpenMP build, which the programs link when installed, follows
  // LibTorch's OpenMP count anyway).
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(threads);
  return runtime_info();
}

bool set_this_threads_intra_op_threads(int threads) {
  if (threads < 1) throw invalid_argument("intra-op threads must be >= 1, got " + std::to_string(threads));
  // LibTorch sets a thread's OpenMP count to the process-wide one on the
  // thread's first parallel work; that happens here first, so it cannot
  // undo what follows later. OpenMP keeps the count per thread; the symbol
  // is looked up as OpenBLAS's is above, from the runtime LibTorch loaded,
  // so this library needs no OpenMP of its own to link.
  (void)at::get_num_threads();
  using SetThreads = void (*)(int);
  static const auto omp_set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (omp_set == nullptr) return false;
  omp_set(threads);
  return at::get_num_threads() == threads;
}

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.torch_version = TORCH_VERSION;
  info.blas_library = blas_library();
  info.threads = at::get_num_threads();
  info.cuda_available = torch::cuda::is_available();
  info.cuda_devices = info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
  return info;
}

c10::Device resolve_device(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? c10::Device(torch::kCUDA, 0) : c10::Device(torch::kCPU);
  if (spec == "cpu") return c10::Device(torch::kCPU);
  if (spec.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available()) throw invalid_argument("device '" + spec + "' requested but CUDA is not available");
    int index = 0;
    if (spec.size() > 4) {
      if (spec[4] != ':' || spec.size() == 5 || spec.find_first_not_of("0123456789", 5) != std::string::npos) {
        throw invalid_argument("malformed device '" + spec + "' (auto, cpu, cuda or cuda:N)");
      }
      index = std::stoi(spec.substr(5));
    }
    if (index >= static_cast<int>(torch::cuda::device_count())) {
      throw invalid_argument("device '" + spec + "' does not exist (" + std::to_string(torch::cuda::device_count()) +
                             " CUDA devices)");
    }
    return c10::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw invalid_argument("unknown device '" + spec + "' (auto, cpu, cuda or cuda:N)");
}

}  // namespace refinery
