#include "core/index/hnsw_graph.h"

#include <faiss/IndexHNSW.h>

namespace refinery::index_internal {

std::unique_ptr<faiss::Index> new_hnsw_index(int dim, const IndexOptions& options) {
  auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(dim, options.hnsw_m, faiss::METRIC_INNER_PRODUCT);
  auto storage = std::make_unique<FastFlatIP>(dim);
  delete hnsw->storage;  // IndexHNSWFlat owns it
  hnsw->storage = storage.release();
  hnsw->hnsw.efConstruction = options.hnsw_ef_construction;
  hnsw->hnsw.efSearch = 1;  // the real ef comes with each search; see VectorIndex::search()
  return hnsw;
}

}  // namespace refinery::index_internal
