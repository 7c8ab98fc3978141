// IVF cells kept by Refinery itself: FAISS's k-means centres (and its BLAS
// assignment) and inverted lists. Each list keeps its slots and a contiguous
// copy of their rows (a scan reads a list front to back; rows gathered from
// the index's store by slot measured 2-5x slower to search). The copies live
// in one arena, where each list has a segment with room to grow; a full
// segment moves to the arena's end with twice the room, and the arena is
// laid out afresh (25% room per list) once moved-out space exceeds the live
// rows. One big allocation (huge pages) instead of one per list: filling the
// lists at load no longer pays a 4 KiB page fault per 4 KiB. Each slot's cell
// is kept, so compaction and loading rebuild the lists without assigning
// anything again, and a snapshot stores cells, not a second copy of the
// vectors. Not thread-safe: the VectorIndex's lock guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/index/flat_search.h"

namespace faiss {
struct IndexFlatIP;
}

namespace refinery::index_internal {

constexpr int kMaxIvfNlist = 65536;

class IvfCells {
 public:
  // `centroids`: nlist x dim, unit length.
  IvfCells(int dim, const float* centroids, size_t nlist);
  ~IvfCells();
  IvfCells(const IvfCells&) = delete;
  IvfCells& operator=(const IvfCells&) = delete;

  // Trains nlist centres on n unit rows (spherical k-means, FAISS's).
  static std::unique_ptr<IvfCells> train(int dim, size_t nlist, const float* x, size_t n, int iterations);

  int dim() const { return dim_; }
  size_t nlist() const { return lists_.size(); }
  const float* centroids() const;
  // The nearest cell of each of n rows, and its cosine.
  void assign(const float* x, size_t n, int32_t* cell, float* cosine) const;
  // Lists slots first.. first+n-1 (their rows: n x dim at `rows`) in the
  // given cells (-1: not listed).
  void append(size_t first, const int32_t* cells, const float* rows, size_t n);
  // The slots were renumbered (or loaded): cell_of() becomes `cells` and the
  // lists are laid out afresh in slot order from `vectors` (slot-major).
  void rebuild(std::vector<int32_t> cells, const float* vectors);
  const std::vector<int32_t>& cell_of() const { return cell_of_; }  // per slot
  const std::vector<idx_t>& list(size_t cell) const { return lists_[cell]; }
  // The rows of list(cell), contiguous, in the same order.
  const float* rows(size_t cell) const { return arena_.data() + segments_[cell].offset * dim_; }

 private:
  struct Segment {
    size_t offset = 0, capacity = 0;  // in rows of the arena
  };
  void lay_out(const std::vector<size_t>& counts);  // fresh segments, 25% room each
  void grow_arena(size_t rows);

  int dim_;
  std::unique_ptr<faiss::IndexFlatIP> quantizer_;  // the centres, for BLAS assignment
  std::vector<std::vector<idx_t>> lists_;
  std::vector<Segment> segments_;
  std::vector<float> arena_;  // arena_rows_ x dim
  size_t arena_rows_ = 0, used_rows_ = 0, moved_rows_ = 0;
  std::vector<int32_t> cell_of_;
};

// IVF search: the nprobe best cells, then every live item listed in them,
// with the kernel of flat_search.h. Same result layout as exact_top_k.
void ivf_top_k(const IvfCells& ivf, const float* q, size_t nprobe, size_t k, const uint8_t* live, float* D, idx_t* I);

// The cells for n items when ivf_nlist is automatic: about 4 * sqrt(n), at
// least VectorIndex::kIvfMinPointsPerCell items per cell, at most kMaxIvfNlist.
size_t auto_nlist(size_t n);

}  // namespace refinery::index_internal
