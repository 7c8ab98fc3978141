// refineryd's JSON config file, then its validation.
#include "fuzz_input.h"
#include "server/runtime/server_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  const std::string path = fuzz::as_file(data, size, "refineryd.json");
  fuzz::expect_clean([&] {
    ServerConfig config;
    config.load_file(path);
    config.validate();
    config.to_json();
  });
  return 0;
}
