// Base64 (RFC 4648, standard alphabet, padded), through OpenSSL: embeddings
// as OpenAI's encoding_format "base64" sends them, and images in data: URLs.
#pragma once

#include <string>

namespace refinery {

std::string base64_encode(const std::string& bytes);
// Throws invalid_argument naming `what` on anything but padded base64
// (whitespace is not allowed either).
std::string base64_decode(const std::string& text, const std::string& what);

}  // namespace refinery
