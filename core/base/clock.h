// Time as the server reports and measures it: wall-clock milliseconds since
// the Unix epoch for what is stored and shown (job and model timestamps), and
// elapsed milliseconds on the steady clock for what is measured (latencies).
#pragma once

#include <chrono>
#include <cstdint>

namespace refinery {

inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace refinery
