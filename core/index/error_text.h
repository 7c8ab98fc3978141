// How the index's error messages name things: quoted ids and numbered items.
#pragma once

#include <cstddef>
#include <string>

namespace refinery::index_internal {

inline std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

inline std::string item_name(size_t i, const std::string& id) {
  return "item " + std::to_string(i) + (id.empty() ? std::string() : " (id " + in_quotes(id) + ")");
}

}  // namespace refinery::index_internal
