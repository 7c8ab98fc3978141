// The HTTP API's POST /v1/embeddings body (OpenAI's convention): parsing,
// data: URLs and base64, then the response for made-up embeddings.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "server/http_api/openai_embeddings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  const std::string body(reinterpret_cast<const char*>(data), size);
  fuzz::expect_clean([&] {
    const EmbeddingsRequest r = parse_embeddings_request(body, 64);
    const int dim = 4;
    std::vector<float> rows(r.inputs.size() * dim, 0.25f);
    embeddings_response(r, "tiny@1", rows, dim, 7);
  });
  return 0;
}
