#include "refinery/proto_json.h"

#include <google/protobuf/descriptor.h>

#include <cstdio>
#include <cstdlib>
#include <map>

namespace refinery {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::ordered_json;

ordered_json scalar(const Message& m, const Reflection* r, const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64: return r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32: return r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64: return r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE: return r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT: return shortest_float(r->GetFloat(m, f));
    case FieldDescriptor::CPPTYPE_BOOL: return r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_ENUM: return r->GetEnum(m, f)->name();
    case FieldDescriptor::CPPTYPE_STRING:
      // Bytes (image data) are never worth printing; their size is.
      if (f->type() == FieldDescriptor::TYPE_BYTES) return std::to_string(r->GetString(m, f).size()) + " bytes";
      return r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_MESSAGE: return proto_to_json(r->GetMessage(m, f));
  }
  return nullptr;
}

ordered_json repeated_element(const Message& m, const Reflection* r, const FieldDescriptor* f, int i) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return r->GetRepeatedInt32(m, f, i);
    case FieldDescriptor::CPPTYPE_INT64: return r->GetRepeatedInt64(m, f, i);
    case FieldDescriptor::CPPTYPE_UINT32: return r->GetRepeatedUInt32(m, f, i);
    case FieldDescriptor::CPPTYPE_UINT64: return r->GetRepeatedUInt64(m, f, i);
    case FieldDescriptor::CPPTYPE_DOUBLE: return r->GetRepeatedDouble(m, f, i);
    case FieldDescriptor::CPPTYPE_FLOAT: return shortest_float(r->GetRepeatedFloat(m, f, i));
    case FieldDescriptor::CPPTYPE_BOOL: return r->GetRepeatedBool(m, f, i);
    case FieldDescriptor::CPPTYPE_ENUM: return r->GetRepeatedEnum(m, f, i)->name();
    case FieldDescriptor::CPPTYPE_STRING:
      if (f->type() == FieldDescriptor::TYPE_BYTES) {
        return std::to_string(r->GetRepeatedString(m, f, i).size()) + " bytes";
      }
      return r->GetRepeatedString(m, f, i);
    case FieldDescriptor::CPPTYPE_MESSAGE: return proto_to_json(r->GetRepeatedMessage(m, f, i));
  }
  return nullptr;
}

}  // namespace

double shortest_float(float v) {
  char buf[32];
  for (int precision = 6; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return std::strtod(buf, nullptr);
}

ordered_json proto_to_json(const Message& message) {
  const auto* d = message.GetDescriptor();
  const auto* r = message.GetReflection();
  ordered_json out = ordered_json::object();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_map()) {
      // Map entries are messages {key, value}; print them as one object,
      // keys sorted (protobuf's map order is arbitrary and changes).
      std::map<std::string, ordered_json> sorted;
      for (int j = 0; j < r->FieldSize(message, f); ++j) {
        const Message& entry = r->GetRepeatedMessage(message, f, j);
        const auto* er = entry.GetReflection();
        const auto* key = f->message_type()->map_key();
        const auto* value = f->message_type()->map_value();
        const ordered_json k = scalar(entry, er, key);
        sorted[k.is_string() ? k.get<std::string>() : k.dump()] = scalar(entry, er, value);
      }
      ordered_json map = ordered_json::object();
      for (auto& [k, v] : sorted) map[k] = std::move(v);
      out[f->name()] = std::move(map);
    } else if (f->is_repeated()) {
      ordered_json list = ordered_json::array();
      for (int j = 0; j < r->FieldSize(message, f); ++j) list.push_back(repeated_element(message, r, f, j));
      out[f->name()] = std::move(list);
    } else if (f->containing_oneof() != nullptr || f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      // Only the set member of a oneof, and only set sub-messages: an absent
      // lineage or query is not a message full of zeros.
      if (r->HasField(message, f)) out[f->name()] = scalar(message, r, f);
    } else {
      out[f->name()] = scalar(message, r, f);
    }
  }
  return out;
}

}  // namespace refinery
