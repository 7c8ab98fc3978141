// Reading what the user points the client at: image files, JSON text lists,
// ID=VALUE flags. Every error names the file (and line or item) at fault, so
// the user never has to guess which of fifty arguments was wrong.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "refinery/v1/common.pb.h"

namespace refinery::client {

// The file's bytes, named by the path as given (the server echoes the name in
// its errors and results). The client does not decode: the server does, and
// says which image it could not read.
v1::Image read_image(const std::string& path);

// The size of an image file, checked before any call is made so a typo in
// the last of many paths fails the command before the first call.
size_t image_file_size(const std::string& path);

nlohmann::json read_json_file(const std::string& path);

// A JSON array of strings (the refinery-model --texts format).
std::vector<std::string> read_texts_file(const std::string& path);

// "ID=VALUE" -> {ID, VALUE}; `flag` and `value_name` ("TEXT", "PATH") word
// the error.
std::pair<std::string, std::string> split_id_value(const std::string& arg, const std::string& flag,
                                                   const std::string& value_name);

}  // namespace refinery::client
