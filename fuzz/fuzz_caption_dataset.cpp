// Caption data sets: the first byte picks coco, csv or jsonl; the rest is the
// file. Image files are not looked at (their paths are still parsed and
// normalised).
#include "core/data/caption_dataset.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  if (size == 0) return 0;
  const char* schemes[] = {"coco", "csv", "jsonl"};
  const std::string scheme = schemes[data[0] % 3];
  const std::string path = fuzz::as_file(data + 1, size - 1, "captions");
  CaptionDatasetOptions options;
  options.check_images_exist = false;
  const std::string spec = scheme == "coco" ? "coco:" + path + ":/tmp" : scheme + ":" + path;
  fuzz::expect_clean([&] { load_caption_dataset(spec, options); });
  return 0;
}
