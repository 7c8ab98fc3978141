// IndexOptions as JSON: the "options" object of a saved index's manifest
// (see vector_index_storage.cpp). Private to the index; kept out of
// index_options.h so users of vector_index.h do not parse nlohmann/json.
#pragma once

#include <nlohmann/json.hpp>

#include "core/index/index_options.h"

namespace refinery::index_internal {

nlohmann::json options_to_json(const IndexOptions& o);
// The options read back, resolved(); throws nlohmann's exceptions for a
// missing or mistyped field and invalid_argument for a bad value.
IndexOptions options_from_json(const nlohmann::json& j);

}  // namespace refinery::index_internal
