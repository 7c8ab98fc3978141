// Any bytes as a caption or prompt: UTF-8 decoding, ftfy-style cleaning and
// CLIP's BPE, as every text request goes.
#include "core/text/bpe_tokenizer.h"
#include "core/text/text_cleaner.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  static const BpeTokenizer& tokenizer = BpeTokenizer::default_instance();
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_clean([&] {
    encode_utf8(decode_utf8(text));
    tokenizer.encode(text);
  });
  return 0;
}
