// Image decoding from memory (every format OpenCV reads here) and the header
// check a data set's files get, under the default pixel limit.
#include "core/image/image_decoder.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  fuzz::expect_clean([&] { decode_image(data, size, "input"); });
  const std::string path = fuzz::as_file(data, size, "image");
  fuzz::expect_clean([&] { check_image_file_header(path); });
  return 0;
}
