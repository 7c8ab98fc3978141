#include "core/index/ivf_search.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/Heap.h>

#include "core/index/huge_pages.h"
#include "core/index/vector_index.h"

namespace refinery::index_internal {

IvfCells::IvfCells(int dim, const float* centroids, size_t nlist)
    : dim_(dim), quantizer_(std::make_unique<faiss::IndexFlatIP>(dim)), lists_(nlist), segments_(nlist) {
  quantizer_->add(static_cast<idx_t>(nlist), centroids);
  lay_out(std::vector<size_t>(nlist, 0));
}

IvfCells::~IvfCells() = default;

std::unique_ptr<IvfCells> IvfCells::train(int dim, size_t nlist, const float* x, size_t n, int iterations) {
  faiss::ClusteringParameters cp;
  cp.niter = iterations;
  cp.spherical = true;  // unit vectors: keep the centroids on the sphere too
  faiss::Clustering clustering(dim, nlist, cp);
  faiss::IndexFlatIP assigner(dim);
  clustering.train(static_cast<idx_t>(n), x, assigner);
  return std::make_unique<IvfCells>(dim, clustering.centroids.data(), nlist);
}

const float* IvfCells::centroids() const { return quantizer_->get_xb(); }

void IvfCells::assign(const float* x, size_t n, int32_t* cell, float* cosine) const {
  // In blocks, so the label buffer stays small for a bulk assignment.
  constexpr size_t kBlock = 65536;
  std::vector<idx_t> labels;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t m = std::min(kBlock, n - begin);
    labels.resize(m);
    quantizer_->search(static_cast<idx_t>(m), x + begin * dim_, 1, cosine + begin, labels.data());
    for (size_t i = 0; i < m; ++i) cell[begin + i] = static_cast<int32_t>(labels[i]);
  }
}

void IvfCells::grow_arena(size_t rows) {
  if (rows <= arena_rows_) return;
  const size_t target = std::max(rows, arena_rows_ + arena_rows_ / 2);
  reserve_with_huge_pages(arena_, target * dim_);
  arena_.resize(target * dim_);
  arena_rows_ = target;
}

void IvfCells::lay_out(const std::vector<size_t>& counts) {
  size_t total = 0;
  for (size_t l = 0; l < lists_.size(); ++l) {
    segments_[l].offset = total;
    segments_[l].capacity = counts[l] + counts[l] / 4 + 4;
    total += segments_[l].capacity;
  }
  used_rows_ = total;
  moved_rows_ = 0;
  grow_arena(total);
}

void IvfCells::append(size_t first, const int32_t* cells, const float* rows, size_t n) {
  if (cell_of_.size() < first + n) cell_of_.resize(first + n, -1);
  const size_t row_floats = static_cast<size_t>(dim_);
  for (size_t i = 0; i < n; ++i) {
    cell_of_[first + i] = cells[i];
    if (cells[i] < 0) continue;
    const size_t l = static_cast<size_t>(cells[i]);
    Segment& seg = segments_[l];
    const size_t size = lists_[l].size();
    if (size == seg.capacity) {
      if (moved_rows_ > cell_of_.size()) {
        // Too much moved-out space: lay every list out afresh.
        std::vector<size_t> counts(lists_.size());
        for (size_t c = 0; c < lists_.size(); ++c) counts[c] = lists_[c].size();
        std::vector<float> old = std::move(arena_);
        std::vector<Segment> old_segments = segments_;
        arena_ = {};
        arena_rows_ = 0;
        lay_out(counts);
        for (size_t c = 0; c < lists_.size(); ++c) {
          std::copy_n(old.data() + old_segments[c].offset * row_floats, counts[c] * row_floats,
                      arena_.data() + segments_[c].offset * row_floats);
        }
      } else {
        // Move this list to the end with twice the room.
        const size_t capacity = std::max<size_t>(8, 2 * seg.capacity);
        grow_arena(used_rows_ + capacity);
        std::copy_n(arena_.data() + seg.offset * row_floats, size * row_floats,
                    arena_.data() + used_rows_ * row_floats);
        moved_rows_ += seg.capacity;
        seg.offset = used_rows_;
        seg.capacity = capacity;
        used_rows_ += capacity;
      }
    }
    std::copy_n(rows + i * row_floats, row_floats, arena_.data() + (segments_[l].offset + size) * row_floats);
    lists_[l].push_back(static_cast<idx_t>(first + i));
  }
}

void IvfCells::rebuild(std::vector<int32_t> cells, const float* vectors) {
  std::vector<size_t> counts(lists_.size(), 0);
  for (int32_t c : cells) {
    if (c >= 0) ++counts[static_cast<size_t>(c)];
  }
  for (size_t l = 0; l < lists_.size(); ++l) {
    lists_[l].clear();
    lists_[l].reserve(counts[l]);
  }
  segments_.assign(lists_.size(), Segment{});
  arena_ = {};
  arena_rows_ = 0;
  lay_out(counts);
  const size_t row_floats = static_cast<size_t>(dim_);
  for (size_t s = 0; s < cells.size(); ++s) {
    if (cells[s] < 0) continue;
    const size_t l = static_cast<size_t>(cells[s]);
    std::copy_n(vectors + s * row_floats, row_floats,
                arena_.data() + (segments_[l].offset + lists_[l].size()) * row_floats);
    lists_[l].push_back(static_cast<idx_t>(s));
  }
  cell_of_ = std::move(cells);
}

void ivf_top_k(const IvfCells& ivf, const float* q, size_t nprobe, size_t k, const uint8_t* live, float* D, idx_t* I) {
  const size_t d = static_cast<size_t>(ivf.dim());
  std::vector<float> cell_score(nprobe);
  std::vector<idx_t> cell(nprobe);
  exact_top_k(q, ivf.centroids(), ivf.nlist(), d, nprobe, nullptr, cell_score.data(), cell.data());
  faiss::minheap_heapify(k, D, I);
  for (size_t p = 0; p < nprobe; ++p) {
    if (cell[p] < 0) continue;
    const auto& slots = ivf.list(static_cast<size_t>(cell[p]));
    const float* x = ivf.rows(static_cast<size_t>(cell[p]));
    for (size_t j = 0; j < slots.size(); ++j) {
      const idx_t slot = slots[j];
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
