// The safetensors reader: header length, JSON, dtypes, shapes, offsets.
#include "core/safetensors/safetensors.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  const std::string path = fuzz::as_file(data, size, "model.safetensors");
  fuzz::expect_clean([&] {
    const SafetensorsFile file = SafetensorsFile::open(path);
    for (const auto& name : file.names()) {
      const TensorView& t = file.at(name);
      if (t.numel() <= 4096) t.to_floats();  // every value of small tensors is read
    }
  });
  return 0;
}
