#include "core/base/error.h"

namespace refinery {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::kNotFound: return "NOT_FOUND";
    case ErrorCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case ErrorCode::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case ErrorCode::kUnimplemented: return "UNIMPLEMENTED";
    case ErrorCode::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case ErrorCode::kCancelled: return "CANCELLED";
    case ErrorCode::kUnavailable: return "UNAVAILABLE";
    case ErrorCode::kUnauthenticated: return "UNAUTHENTICATED";
    case ErrorCode::kPermissionDenied: return "PERMISSION_DENIED";
    case ErrorCode::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

std::string without_quoted_input(const std::string& parser_message) {
  std::string m = parser_message;
  const std::string marker = "; last read: '";
  const size_t at = m.find(marker);
  if (at == std::string::npos) return m;
  // The quoted text may hold quotes itself: it ends at "'; " (what was
  // expected follows) or at the message's last quote.
  size_t end = m.find("'; ", at + marker.size());
  end = end != std::string::npos ? end + 1 : m.rfind('\'');
  if (end == std::string::npos || end < at + marker.size()) return m.substr(0, at);
  return m.erase(at, end + 1 - at);
}

}  // namespace refinery
