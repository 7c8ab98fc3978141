// OpenAI's embeddings convention (POST /v1/embeddings) in Refinery's terms,
// as text-embeddings-inference, Infinity and vLLM speak it, so LangChain,
// LlamaIndex and vector databases' integrations work unchanged:
//
//   {"model": "tiny", "input": "a cat" | ["a cat", ...] | [{"type": "text",
//    "text": ...} | {"type": "image", "image": "data:image/png;base64,..."}],
//    "encoding_format": "float" | "base64", "dimensions": 512}
//   -> {"object": "list", "data": [{"object": "embedding", "index": 0,
//       "embedding": [...] | "<base64 little-endian float32>"}],
//       "model": "tiny@1", "usage": {"prompt_tokens": N, "total_tokens": N}}
//
// Embeddings are L2-normalised, as those APIs return them. Images come only
// inline (data: URLs): the server fetches nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace refinery {

struct EmbeddingsInput {
  enum class Kind { kText, kImage };
  Kind kind = Kind::kText;
  std::string text;   // kText
  std::string image;  // kImage: the encoded bytes
  std::string name;   // "input[3]", for error messages
};

struct EmbeddingsRequest {
  std::string model;  // empty: the server's default
  std::vector<EmbeddingsInput> inputs;
  bool base64 = false;
  std::optional<int64_t> dimensions;
};

// Throws invalid_argument naming the field (`input[2].image: ...`) for
// anything the convention does not allow or Refinery does not do: token
// arrays, URLs to fetch, more than `max_items` inputs, unknown
// encoding_format. Unknown top-level keys ("user") are ignored, as OpenAI
// clients send them.
EmbeddingsRequest parse_embeddings_request(const std::string& body, int max_items);

// The response body. `rows` holds one embedding of `dim` floats per input,
// in input order. Throws invalid_argument when `dimensions` was given and is
// not `dim`: CLIP's embeddings are not trained to be shortened.
std::string embeddings_response(const EmbeddingsRequest& request, const std::string& model_ref,
                                const std::vector<float>& rows, int dim, int64_t tokens);

}  // namespace refinery
