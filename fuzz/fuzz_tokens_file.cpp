// The --auth-tokens file (text or JSON) and the authorization header checked
// against it.
#include "fuzz_input.h"
#include "server/runtime/access_control.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  const std::string path = fuzz::as_file(data, size, "tokens");
  fuzz::expect_clean([&] {
    const AccessControl access(path);
    access.summary();
    access.authorize_header(std::string(reinterpret_cast<const char*>(data), size), "EmbedText");
  });
  return 0;
}
