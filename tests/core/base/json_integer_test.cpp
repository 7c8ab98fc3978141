#include "core/base/json_integer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "support/errors.h"

namespace refinery {
namespace {

using nlohmann::json;

TEST(JsonInteger, TakesIntegersInRangeAndIntegralFloats) {
  EXPECT_EQ(json_integer<int>(json::parse("42"), "x"), 42);
  EXPECT_EQ(json_integer<int>(json::parse("-7"), "x"), -7);
  EXPECT_EQ(json_integer<int>(json::parse("512.0"), "x"), 512);
  EXPECT_EQ(json_integer<int>(json::parse("2147483647"), "x"), std::numeric_limits<int>::max());
  EXPECT_EQ(json_integer<int>(json::parse("-2147483648"), "x"), std::numeric_limits<int>::min());
  EXPECT_EQ(json_integer<uint64_t>(json::parse("18446744073709551615"), "x"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(json_integer<int64_t>(json::parse("-9223372036854775808"), "x"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(json_integer<size_t>(json::parse("0"), "x"), 0u);
}

// Each of these was undefined behaviour or a silently wrapped value through
// nlohmann's get<T>(): 1e300 into an int, 2^31 into an int, -1 into a size_t.
TEST(JsonInteger, RefusesWhatDoesNotFitNamingTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"1e300", "int"}, {"2147483648", "int"}, {"-2147483649", "int"}, {"1.5", "int"}, {"NaN", "int"},
      {"\"12\"", "int"}, {"true", "int"}, {"null", "int"}, {"-1", "size_t"}, {"9.3e18", "int64"},
  };
  for (const auto& [text, type] : cases) {
    const json value = json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/false);
    const std::string t = type;
    const auto error = testing::error_of([&] {
      if (t == "int") json_integer<int>(value, "config.json: key 'threads'");
      if (t == "size_t") json_integer<size_t>(value, "config.json: key 'threads'");
      if (t == "int64") json_integer<int64_t>(value, "config.json: key 'threads'");
    });
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << text;
    EXPECT_NE(std::string(error.what()).find("config.json: key 'threads': expected an integer from"),
              std::string::npos)
        << text << ": " << error.what();
  }
}

}  // namespace
}  // namespace refinery
