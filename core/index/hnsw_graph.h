// The HNSW graph's storage with the fast kernel of flat_search.h, and a new,
// empty HNSW index built on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <faiss/IndexFlat.h>
#include <faiss/impl/DistanceComputer.h>

#include "core/index/flat_search.h"
#include "core/index/index_options.h"

namespace refinery::index_internal {

// HNSW's distances over its flat storage, computed with inner_product().
struct FastInnerProducts : faiss::FlatCodesDistanceComputer {
  explicit FastInnerProducts(const faiss::IndexFlat& storage)
      : FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
        base(storage.get_xb()),
        d(static_cast<size_t>(storage.d)) {}
  void set_query(const float* x) override { q = x; }
  float distance_to_code(const uint8_t* code) override {
    return inner_product(q, reinterpret_cast<const float*>(code), d);
  }
  float symmetric_dis(idx_t i, idx_t j) override { return inner_product(base + i * d, base + j * d, d); }

  const float* base;
  size_t d;
  const float* q = nullptr;
};

// The HNSW graph's storage: a plain IndexFlatIP (and saved as one) whose
// distance computer is FastInnerProducts.
struct FastFlatIP : faiss::IndexFlatIP {
  explicit FastFlatIP(idx_t d) : faiss::IndexFlatIP(d) {}
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override {
    return new FastInnerProducts(*this);
  }
};

// An empty IndexHNSWFlat over `dim`-dimensional vectors with FastFlatIP
// storage and the options' m and ef_construction. Its shared efSearch is 1:
// the real ef comes with each search (see VectorIndex::search()).
std::unique_ptr<faiss::Index> new_hnsw_index(int dim, const IndexOptions& options);

}  // namespace refinery::index_internal
