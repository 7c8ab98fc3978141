// Test data for the vector-index tests: Gaussian vectors, numbered ids, and
// a full disk (a file-size limit) for a scope.
#pragma once

#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace refinery::testing {

// n x dim Gaussian vectors; with random_lengths each row is also scaled by
// a factor in [0.5, 3) (the indexes must normalise them).
inline std::vector<float> random_vectors(size_t n, int dim, uint64_t seed, bool random_lengths = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> scale(0.5f, 3.0f);
  std::vector<float> x(n * dim);
  for (size_t i = 0; i < n; ++i) {
    const float s = random_lengths ? scale(rng) : 1.0f;
    for (int j = 0; j < dim; ++j) x[i * dim + j] = s * normal(rng);
  }
  return x;
}

// prefix0, prefix1, ...
inline std::vector<std::string> make_ids(size_t n, const std::string& prefix = "item-") {
  std::vector<std::string> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = prefix + std::to_string(i);
  return ids;
}

// While one exists, this process's writes past `bytes` of any file fail
// with EFBIG (even for root): a full disk, as far as the writer can tell.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
    rlimit limited = saved_;
    limited.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limited);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

}  // namespace refinery::testing
