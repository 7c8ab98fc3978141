#include "server/runtime/log.h"

#include <sys/time.h>

#include <cstdio>
#include <ctime>
#include <mutex>

namespace refinery {
namespace {

void vlog(const char* level, const char* format, va_list args) {
  char message[4096];
  vsnprintf(message, sizeof message, format, args);
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm t{};
  gmtime_r(&tv.tv_sec, &t);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &t);
  static std::mutex mu;  // whole lines, never interleaved
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, static_cast<long>(tv.tv_usec / 1000), level, message);
}

}  // namespace

void log_info(const char* format, ...) {
  va_list a;
  va_start(a, format);
  vlog("INFO", format, a);
  va_end(a);
}

void log_warning(const char* format, ...) {
  va_list a;
  va_start(a, format);
  vlog("WARN", format, a);
  va_end(a);
}

void log_error(const char* format, ...) {
  va_list a;
  va_start(a, format);
  vlog("ERROR", format, a);
  va_end(a);
}

}  // namespace refinery
