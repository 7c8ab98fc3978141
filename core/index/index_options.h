// What kind of index to build and its knobs: IndexKind, IndexOptions (the
// build-time options, validated by resolved()) and SearchParams (per call).
// Public: vector_index.h includes it.
#pragma once

#include <string>

namespace refinery {

enum class IndexKind { kFlat, kIvf, kHnsw };

const char* index_kind_name(IndexKind kind);  // "flat", "ivf", "hnsw"
IndexKind parse_index_kind(const std::string& name);  // invalid_argument naming it

struct IndexOptions {
  IndexKind kind = IndexKind::kFlat;
  int ivf_nlist = 0;              // IVF cells; 0 = about 4 * sqrt(n) at training time, retrained as n grows
  int ivf_nprobe = 0;             // cells visited by default; 0 = max(8, nlist / 16)
  int hnsw_m = 32;                // graph neighbours per node; 0 = 32
  int hnsw_ef_construction = 64;  // build beam width; 0 = 64
  int hnsw_ef_search = 64;        // default search beam width; 0 = 64

  // Zeros replaced by the defaults above; invalid_argument naming a bad field.
  IndexOptions resolved() const;
};

// Per-search knobs; 0 = the index's default.
struct SearchParams {
  int ivf_nprobe = 0;
  int hnsw_ef_search = 0;
};

}  // namespace refinery
