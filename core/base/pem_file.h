// Reading PEM files (certificates, keys) named by a flag, for the server's
// and the client's TLS settings.
#pragma once

#include <string>

namespace refinery {

// The file's text. Throws invalid_argument naming `path` and `flag` when it
// cannot be read or holds no PEM block; the message never quotes the file.
std::string read_pem_file(const std::string& path, const std::string& flag);

}  // namespace refinery
