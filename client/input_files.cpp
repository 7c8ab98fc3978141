#include "client/input_files.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/base/error.h"

namespace refinery::client {

using nlohmann::json;

v1::Image read_image(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw not_found("cannot read image '" + path + "': " + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw invalid_argument("cannot read image '" + path + "': read error");
  if (bytes.empty()) throw invalid_argument("image '" + path + "' is empty");
  v1::Image image;
  image.set_data(std::move(bytes));
  image.set_name(path);
  return image;
}

size_t image_file_size(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    throw not_found("cannot read image '" + path + "': " + (ec ? ec.message() : "no such file"));
  }
  if (!std::filesystem::is_regular_file(status)) throw invalid_argument("image '" + path + "' is not a regular file");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw invalid_argument("cannot read image '" + path + "': " + ec.message());
  if (size == 0) throw invalid_argument("image '" + path + "' is empty");
  return static_cast<size_t>(size);
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw not_found("cannot open '" + path + "': " + std::strerror(errno));
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw invalid_argument(path + ": not valid JSON: " + e.what());
  }
}

std::vector<std::string> read_texts_file(const std::string& path) {
  const json j = read_json_file(path);
  if (!j.is_array()) throw invalid_argument(path + ": must be a JSON array of strings");
  std::vector<std::string> texts;
  texts.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) throw invalid_argument(path + ": item " + std::to_string(i) + " is not a string");
    texts.push_back(j[i].get<std::string>());
  }
  if (texts.empty()) throw invalid_argument(path + ": holds no texts (an empty array)");
  return texts;
}

std::pair<std::string, std::string> split_id_value(const std::string& arg, const std::string& flag,
                                                   const std::string& value_name) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw invalid_argument(flag + " expects ID=" + value_name + ", got '" + arg + "'");
  }
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

}  // namespace refinery::client
