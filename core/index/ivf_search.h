// IVF search over FAISS's trained cells and inverted lists with our own
// distance kernel, and the automatic number of cells.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/index/flat_search.h"

namespace faiss {
struct IndexIVF;
}

namespace refinery::index_internal {

constexpr int kMaxIvfNlist = 65536;

// IVF search over FAISS's trained cells and lists, with the kernel of
// flat_search.h: the nprobe best cells, then every live item listed in them.
// Same result layout as exact_top_k.
void ivf_top_k(const faiss::IndexIVF& ivf, const float* q, size_t nprobe, size_t k, const uint8_t* live, float* D,
               idx_t* I);

// The cells for n items when ivf_nlist is automatic: about 4 * sqrt(n), at
// least VectorIndex::kIvfMinPointsPerCell items per cell, at most kMaxIvfNlist.
size_t auto_nlist(size_t n);

}  // namespace refinery::index_internal
