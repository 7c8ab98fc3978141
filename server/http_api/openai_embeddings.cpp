#include "server/http_api/openai_embeddings.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "refinery/proto_json.h"
#include "server/http_api/base64.h"

namespace refinery {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// "data:image/png;base64,AAAA" -> the bytes.
std::string image_from_data_url(const json& value, const std::string& what) {
  if (!value.is_string()) throw invalid_argument(what + ": expected a data URL string (data:image/...;base64,...)");
  const std::string& url = value.get_ref<const std::string&>();
  const std::string prefix = "data:image/";
  if (url.rfind(prefix, 0) != 0) {
    const bool remote = url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
    throw invalid_argument(what + (remote ? ": the server fetches no URLs; send the image inline as "
                                            "data:image/...;base64,..."
                                          : ": expected a data URL (data:image/...;base64,...)"));
  }
  const size_t comma = url.find(',');
  if (comma == std::string::npos || url.compare(comma - 7, 7, ";base64") != 0) {
    throw invalid_argument(what + ": a data URL must be base64 (data:image/...;base64,...)");
  }
  std::string bytes = base64_decode(url.substr(comma + 1), what);
  if (bytes.empty()) throw invalid_argument(what + ": the image is empty");
  return bytes;
}

EmbeddingsInput parse_item(const json& item, size_t i) {
  const std::string name = "input[" + std::to_string(i) + "]";
  EmbeddingsInput in;
  in.name = name;
  if (item.is_string()) {
    in.text = item.get<std::string>();
    return in;
  }
  if (item.is_array()) {
    throw invalid_argument(name + ": token arrays are not supported; send the text (Refinery tokenises it)");
  }
  if (!item.is_object()) throw invalid_argument(name + ": expected a string or an object with \"type\"");
  const auto type = item.find("type");
  if (type == item.end() || !type->is_string()) {
    throw invalid_argument(name + ": an object input needs \"type\": \"text\" or \"image\"");
  }
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "text") {
    const auto text = item.find("text");
    if (text == item.end() || !text->is_string()) throw invalid_argument(name + ".text: expected a string");
    in.text = text->get<std::string>();
  } else if (t == "image") {
    const auto image = item.find("image");
    if (image == item.end()) throw invalid_argument(name + ".image: missing (data:image/...;base64,...)");
    in.kind = EmbeddingsInput::Kind::kImage;
    in.image = image_from_data_url(*image, name + ".image");
  } else {
    throw invalid_argument(name + ".type: \"" + t + "\" is neither \"text\" nor \"image\"");
  }
  return in;
}

}  // namespace

EmbeddingsRequest parse_embeddings_request(const std::string& body, int max_items) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw invalid_argument("request body: not valid JSON: " + without_quoted_input(e.what()));
  }
  if (!j.is_object()) throw invalid_argument("request body: expected a JSON object");
  EmbeddingsRequest r;
  if (const auto m = j.find("model"); m != j.end() && !m->is_null()) {
    if (!m->is_string()) throw invalid_argument("model: expected a string");
    r.model = m->get<std::string>();
  }
  const auto input = j.find("input");
  if (input == j.end() || input->is_null()) throw invalid_argument("input: missing (a string or an array)");
  if (input->is_string()) {
    r.inputs.push_back(parse_item(*input, 0));
  } else if (input->is_array()) {
    if (input->empty()) throw invalid_argument("input: empty");
    if (!input->empty() && (*input)[0].is_number_integer()) {
      throw invalid_argument("input: token arrays are not supported; send the text (Refinery tokenises it)");
    }
    if (input->size() > static_cast<size_t>(max_items)) {
      throw invalid_argument("input: " + std::to_string(input->size()) + " items; at most " +
                             std::to_string(max_items) + " in one request (--max-request-items)");
    }
    for (size_t i = 0; i < input->size(); ++i) r.inputs.push_back(parse_item((*input)[i], i));
  } else {
    throw invalid_argument("input: expected a string or an array");
  }
  if (const auto f = j.find("encoding_format"); f != j.end() && !f->is_null()) {
    if (!f->is_string() || (*f != "float" && *f != "base64")) {
      throw invalid_argument("encoding_format: expected \"float\" or \"base64\"");
    }
    r.base64 = *f == "base64";
  }
  if (const auto d = j.find("dimensions"); d != j.end() && !d->is_null()) {
    if (!d->is_number_integer() || d->get<int64_t>() <= 0) {
      throw invalid_argument("dimensions: expected a positive integer");
    }
    r.dimensions = d->get<int64_t>();
  }
  return r;
}

std::string embeddings_response(const EmbeddingsRequest& request, const std::string& model_ref,
                                const std::vector<float>& rows, int dim, int64_t tokens) {
  if (request.dimensions && *request.dimensions != dim) {
    throw invalid_argument("dimensions: " + model_ref + " makes " + std::to_string(dim) +
                           "-dimensional embeddings, and CLIP's cannot be shortened to " +
                           std::to_string(*request.dimensions) + " (omit \"dimensions\" or give " +
                           std::to_string(dim) + ")");
  }
  const size_t n = request.inputs.size();
  if (rows.size() != n * static_cast<size_t>(dim)) {
    throw internal_error("embeddings_response: " + std::to_string(rows.size()) + " floats for " + std::to_string(n) +
                         " inputs of " + std::to_string(dim));
  }
  // ordered_json: the keys in OpenAI's order (object, data, model, usage).
  ordered_json data = ordered_json::array();
  for (size_t i = 0; i < n; ++i) {
    const float* row = rows.data() + i * static_cast<size_t>(dim);
    ordered_json item = {{"object", "embedding"}, {"index", i}};
    if (request.base64) {
      // Little-endian float32, as OpenAI's clients decode it (x86 and ARM
      // servers are little-endian).
      std::string bytes(static_cast<size_t>(dim) * sizeof(float), '\0');
      std::memcpy(bytes.data(), row, bytes.size());
      item["embedding"] = base64_encode(bytes);
    } else {
      ordered_json values = ordered_json::array();
      for (int k = 0; k < dim; ++k) values.push_back(shortest_float(row[k]));
      item["embedding"] = std::move(values);
    }
    data.push_back(std::move(item));
  }
  const ordered_json out = {{"object", "list"},
                    {"data", std::move(data)},
                    {"model", model_ref},
                    {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
  return out.dump();
}

}  // namespace refinery
