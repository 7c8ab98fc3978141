// The RFC 4180 CSV reader behind csv: data sets and class lists.
#include "core/data/csv_reader.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_clean([&] { parse_csv(text, "input"); });
  return 0;
}
