#include "core/base/pem_file.h"

#include <fstream>
#include <sstream>

#include "core/base/error.h"

namespace refinery {

std::string read_pem_file(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw invalid_argument(path + ": cannot read (" + flag + ")");
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  if (text.find("-----BEGIN ") == std::string::npos) throw invalid_argument(path + ": not a PEM file (" + flag + ")");
  return text;
}

}  // namespace refinery
