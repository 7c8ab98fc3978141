// Exact inner-product search: the SIMD kernel every distance we control goes
// through (see flat_search.cpp), and the exact scan that FLAT indexes and
// untrained IVF indexes search with.
#pragma once

#include <cstddef>
#include <cstdint>

#include <faiss/Index.h>

namespace refinery::index_internal {

using idx_t = faiss::Index::idx_t;

// The inner product of a[0..d) and b[0..d).
float inner_product(const float* a, const float* b, size_t d);

// The best k of n rows of `base` for query q (skipping slots whose live[]
// is 0 when live is given), best first, padded with label -1: the layout
// FAISS's searches return.
void exact_top_k(const float* q, const float* base, size_t n, size_t d, size_t k, const uint8_t* live, float* D,
                 idx_t* I);

}  // namespace refinery::index_internal
