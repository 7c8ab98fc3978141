// Protobuf messages as JSON, for the client's --json output and the HTTP API. Keys are the proto field
// names (snake_case) in .proto order (map keys sorted), every field is present (defaults
// included), enums are their names. Unlike protobuf's own JSON printer,
// 64-bit integers stay numbers (proto3's JSON mapping quotes them), so
// `jq '.size > 3'` works, and floats print in their shortest form (0.1, not
// 0.10000000149011612).
#pragma once

#include <google/protobuf/message.h>

#include <nlohmann/json.hpp>

namespace refinery {

nlohmann::ordered_json proto_to_json(const google::protobuf::Message& message);

// The double nearest to the shortest decimal that reads back as `v` (0.1,
// not 0.10000000149011612): how a float32 prints in JSON.
double shortest_float(float v);

}  // namespace refinery
