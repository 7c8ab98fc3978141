#include "core/index/ivf_search.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>

#include "core/index/vector_index.h"

namespace refinery::index_internal {

void ivf_top_k(const faiss::IndexIVF& ivf, const float* q, size_t nprobe, size_t k, const uint8_t* live, float* D,
               idx_t* I) {
  const auto& quantizer = static_cast<const faiss::IndexFlat&>(*ivf.quantizer);
  const size_t d = static_cast<size_t>(ivf.d);
  std::vector<float> cell_score(nprobe);
  std::vector<idx_t> cell(nprobe);
  exact_top_k(q, quantizer.get_xb(), ivf.nlist, d, nprobe, nullptr, cell_score.data(), cell.data());
  faiss::minheap_heapify(k, D, I);
  for (size_t p = 0; p < nprobe; ++p) {
    if (cell[p] < 0) continue;
    const size_t list = static_cast<size_t>(cell[p]);
    const size_t count = ivf.invlists->list_size(list);
    if (count == 0) continue;
    faiss::InvertedLists::ScopedCodes codes(ivf.invlists, list);
    faiss::InvertedLists::ScopedIds ids(ivf.invlists, list);
    const float* x = reinterpret_cast<const float*>(codes.get());
    for (size_t j = 0; j < count; ++j) {
      const idx_t slot = ids[j];
      if (live && !live[slot]) continue;
      const float score = inner_product(q, x + j * d, d);
      if (score > D[0]) faiss::minheap_replace_top(k, D, I, score, slot);
    }
  }
  faiss::minheap_reorder(k, D, I);
}

size_t auto_nlist(size_t n) {
  size_t by_sqrt = static_cast<size_t>(std::lround(4.0 * std::sqrt(static_cast<double>(n))));
  size_t by_points = n / VectorIndex::kIvfMinPointsPerCell;
  return std::max<size_t>(1, std::min({by_sqrt, by_points, static_cast<size_t>(kMaxIvfNlist)}));
}

}  // namespace refinery::index_internal
