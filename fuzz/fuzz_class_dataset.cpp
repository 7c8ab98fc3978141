// Labelled class sets in their CSV form (filepath,label with text or integer
// labels): the file is the input. Image files are not looked at (their paths
// are still parsed and normalised, and the labels made into classes).
#include "core/data/class_dataset.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  const std::string path = fuzz::as_file(data, size, "classes.csv");
  ClassDatasetOptions options;
  options.check_images = false;
  fuzz::expect_clean([&] {
    const ClassDataset ds = load_class_dataset("csv:" + path, options);
    // What the loader promises: every item's label names one of the classes.
    for (const auto& item : ds.items) {
      if (item.label < 0 || item.label >= static_cast<int64_t>(ds.class_keys.size())) std::abort();
    }
  });
  return 0;
}
