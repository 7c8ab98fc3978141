// Integers read from JSON without undefined behaviour. nlohmann's get<int>()
// converts with a plain cast, so {"threads": 1e300} or 2^40 into an int is
// undefined behaviour (UBSan flags it) or a silently wrapped value. Config
// files, checkpoint metadata and index manifests read their integers here.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "core/base/error.h"

namespace refinery {

// `value` as a T: a JSON integer in T's range, or a float with an integral
// value in range (512.0); anything else is INVALID_ARGUMENT "WHAT: expected
// an integer from MIN to MAX" (the value itself is not quoted).
template <typename T>
T json_integer(const nlohmann::json& value, const std::string& what) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  constexpr auto lo = std::numeric_limits<T>::min();
  constexpr auto hi = std::numeric_limits<T>::max();
  auto fail = [&]() -> T {
    throw invalid_argument(what + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  };
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    return v <= static_cast<std::uint64_t>(hi) ? static_cast<T>(v) : fail();
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      return v >= 0 && static_cast<std::uint64_t>(v) <= static_cast<std::uint64_t>(hi) ? static_cast<T>(v) : fail();
    } else {
      return v >= static_cast<std::int64_t>(lo) && v <= static_cast<std::int64_t>(hi) ? static_cast<T>(v) : fail();
    }
  }
  if (value.is_number_float()) {
    const double v = value.get<double>();
    // Both bounds as doubles: hi may round up (2^63), so the upper test is strict.
    if (std::isfinite(v) && v == std::floor(v) && v >= static_cast<double>(lo) && v < static_cast<double>(hi) + 1.0) {
      return static_cast<T>(v);
    }
    return fail();
  }
  return fail();
}

}  // namespace refinery
