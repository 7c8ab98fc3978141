// The refinery::Error a call throws, for tests that check its code and
// message. A call that throws nothing fails the test.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/base/error.h"

namespace refinery::testing {

inline Error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no refinery::Error thrown";
  return Error(ErrorCode::kInternal, "(no error thrown)");
}

// error_of, expecting `code`.
inline Error expect_error(const std::function<void()>& f, ErrorCode code) {
  Error e = error_of(f);
  EXPECT_EQ(e.code(), code) << e.what();
  return e;
}

// expect_error with kInvalidArgument, whose message names every one of
// `parts` and none of `absent`.
inline void expect_invalid(const std::function<void()>& f, const std::vector<std::string>& parts,
                           const std::vector<std::string>& absent = {}) {
  const std::string what = expect_error(f, ErrorCode::kInvalidArgument).what();
  for (const std::string& p : parts) EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  for (const std::string& p : absent) EXPECT_EQ(what.find(p), std::string::npos) << "'" << p << "' in: " << what;
}

}  // namespace refinery::testing
