#include "core/index/index_options.h"

#include "core/base/error.h"
#include "core/base/json_integer.h"
#include "core/index/error_text.h"
#include "core/index/index_options_json.h"
#include "core/index/ivf_search.h"
#include "core/index/vector_index.h"

namespace refinery {

using index_internal::in_quotes;
using index_internal::kMaxIvfNlist;

const char* index_kind_name(IndexKind kind) {
  switch (kind) {
    case IndexKind::kFlat: return "flat";
    case IndexKind::kIvf: return "ivf";
    case IndexKind::kHnsw: return "hnsw";
  }
  return "unknown";
}

IndexKind parse_index_kind(const std::string& name) {
  if (name == "flat") return IndexKind::kFlat;
  if (name == "ivf") return IndexKind::kIvf;
  if (name == "hnsw") return IndexKind::kHnsw;
  throw invalid_argument("unknown index kind " + in_quotes(name) + " (expected flat, ivf or hnsw)");
}

IndexOptions IndexOptions::resolved() const {
  IndexOptions o = *this;
  auto check = [](int value, int lo, int hi, const char* field) {
    if (value < lo || value > hi) {
      throw invalid_argument(std::string("index option ") + field + " = " + std::to_string(value) +
                             " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
  };
  check(o.ivf_nlist, 0, kMaxIvfNlist, "ivf_nlist");
  check(o.ivf_nprobe, 0, kMaxIvfNlist, "ivf_nprobe");
  check(o.hnsw_m, 0, 256, "hnsw_m");
  check(o.hnsw_ef_construction, 0, 4096, "hnsw_ef_construction");
  check(o.hnsw_ef_search, 0, VectorIndex::kMaxK * 16, "hnsw_ef_search");
  const IndexOptions defaults;
  if (o.hnsw_m == 0) o.hnsw_m = defaults.hnsw_m;
  if (o.hnsw_m < 2) throw invalid_argument("index option hnsw_m = 1 is too small (at least 2)");
  if (o.hnsw_ef_construction == 0) o.hnsw_ef_construction = defaults.hnsw_ef_construction;
  if (o.hnsw_ef_search == 0) o.hnsw_ef_search = defaults.hnsw_ef_search;
  return o;
}

namespace index_internal {

nlohmann::json options_to_json(const IndexOptions& o) {
  return {{"kind", index_kind_name(o.kind)},
          {"ivf_nlist", o.ivf_nlist},
          {"ivf_nprobe", o.ivf_nprobe},
          {"hnsw_m", o.hnsw_m},
          {"hnsw_ef_construction", o.hnsw_ef_construction},
          {"hnsw_ef_search", o.hnsw_ef_search}};
}

IndexOptions options_from_json(const nlohmann::json& j) {
  IndexOptions o;
  o.kind = parse_index_kind(j.at("kind").get<std::string>());
  o.ivf_nlist = json_integer<int>(j.at("ivf_nlist"), "ivf_nlist");
  o.ivf_nprobe = json_integer<int>(j.at("ivf_nprobe"), "ivf_nprobe");
  o.hnsw_m = json_integer<int>(j.at("hnsw_m"), "hnsw_m");
  o.hnsw_ef_construction = json_integer<int>(j.at("hnsw_ef_construction"), "hnsw_ef_construction");
  o.hnsw_ef_search = json_integer<int>(j.at("hnsw_ef_search"), "hnsw_ef_search");
  return o.resolved();
}

}  // namespace index_internal
}  // namespace refinery
