// The refinery::Error a call throws, for tests that check its code and
// message. A call that throws nothing fails the test.
#pragma once

#include <gtest/gtest.h>

#include <functional>

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

}  // namespace refinery::testing
