// Errors that cross Refinery's boundaries. Core throws `refinery::Error`; the
// server maps `Error::code()` to a gRPC status in exactly one place, and the
// command-line tools print `what()` and exit non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace refinery {

enum class ErrorCode {
  kInvalidArgument,     // the caller's input is wrong (bad file, bad key, bad flag)
  kNotFound,            // a named thing does not exist
  kFailedPrecondition,  // valid input, wrong state for it
  kResourceExhausted,   // a queue, budget or limit is full
  kUnimplemented,       // a valid request we do not support (yet)
  kDeadlineExceeded,    // the caller's deadline passed before the work ran
  kCancelled,           // the caller went away
  kUnavailable,         // try again later (the server is shutting down)
  kUnauthenticated,     // no credentials, or ones the server does not know
  kPermissionDenied,    // known caller, not allowed to do this
  kInternal,            // a bug or an unexpected library failure
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

inline Error invalid_argument(const std::string& m) { return Error(ErrorCode::kInvalidArgument, m); }
inline Error not_found(const std::string& m) { return Error(ErrorCode::kNotFound, m); }
inline Error failed_precondition(const std::string& m) { return Error(ErrorCode::kFailedPrecondition, m); }
inline Error resource_exhausted(const std::string& m) { return Error(ErrorCode::kResourceExhausted, m); }
inline Error unimplemented(const std::string& m) { return Error(ErrorCode::kUnimplemented, m); }
inline Error unauthenticated(const std::string& m) { return Error(ErrorCode::kUnauthenticated, m); }
inline Error permission_denied(const std::string& m) { return Error(ErrorCode::kPermissionDenied, m); }
inline Error internal_error(const std::string& m) { return Error(ErrorCode::kInternal, m); }
inline Error unavailable(const std::string& m) { return Error(ErrorCode::kUnavailable, m); }

// A name as error messages quote it: 'name'.
inline std::string single_quoted(const std::string& s) { return "'" + s + "'"; }

// A parser's message without the input it quotes: nlohmann::json's "...;
// last read: 'TEXT'" is dropped, keeping where and why. Errors about files a
// client names must never disclose what those files contain.
std::string without_quoted_input(const std::string& parser_message);

}  // namespace refinery
