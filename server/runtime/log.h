// refineryd's log: one line per event on stderr, with a UTC timestamp and a
// level, so operators can see what the server is doing.
#pragma once

#include <cstdarg>

namespace refinery {

void log_info(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace refinery
