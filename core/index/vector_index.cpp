#include "core/index/vector_index.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/distances.h>

#include "core/base/error.h"
#include "core/index/error_text.h"
#include "core/index/flat_search.h"
#include "core/index/hnsw_graph.h"
#include "core/index/huge_pages.h"
#include "core/index/ivf_search.h"

namespace refinery {
namespace {

using index_internal::auto_nlist;
using index_internal::exact_top_k;
using index_internal::idx_t;
using index_internal::in_quotes;
using index_internal::item_name;
using index_internal::ivf_top_k;

constexpr int kIvfTrainIterations = 10;  // k-means iterations; FAISS's 25 buys little on embeddings
constexpr size_t kBlasBatch = 20;  // from this many queries on, exact search goes through FAISS's BLAS path

// Normalises `src` into `dst`; returns an error description, empty when fine.
std::string normalize_row(const float* src, float* dst, int dim) {
  double sq = 0;
  for (int j = 0; j < dim; ++j) {
    if (!std::isfinite(src[j])) {
      return "value " + std::to_string(j) + " is " + (std::isnan(src[j]) ? "NaN" : "infinite");
    }
    sq += static_cast<double>(src[j]) * src[j];
  }
  if (!(sq > 0) || !std::isfinite(sq)) return "the vector has zero (or unrepresentable) length";
  const double inv = 1.0 / std::sqrt(sq);
  for (int j = 0; j < dim; ++j) dst[j] = static_cast<float>(src[j] * inv);
  return {};
}

// Makes room for `extra` more elements, growing the capacity by at least
// half: exact reserves would copy the whole vector on every single add.
template <typename T>
void reserve_more(std::vector<T>& v, size_t extra) {
  const size_t need = v.size() + extra;
  if (need > v.capacity()) index_internal::reserve_with_huge_pages(v, std::max(need, v.capacity() + v.capacity() / 2));
}

// FAISS labels are slot numbers; a tombstoned slot is not a member.
struct LiveSlots : faiss::IDSelector {
  LiveSlots(const uint8_t* live, size_t n) : live(live), n(n) {}
  bool is_member(idx_t id) const override { return id >= 0 && static_cast<size_t>(id) < n && live[id] != 0; }
  const uint8_t* live;
  size_t n;
};

// Caps OpenMP threads for the calling thread only (the setting is per
// thread): one query per call must not wake a team of spinning threads on
// every search, which costs latency and CPU under concurrent requests.
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(size_t wanted) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(static_cast<int>(std::max<size_t>(1, std::min<size_t>(wanted, saved_))));
  }
  ~ScopedOmpThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

}  // namespace

VectorIndex::VectorIndex(int dim, const IndexOptions& options) : dim_(dim), options_(options.resolved()) {
  if (dim < 1 || dim > kMaxDim) {
    throw invalid_argument("index dimension " + std::to_string(dim) + " is out of range [1, " +
                           std::to_string(kMaxDim) + "]");
  }
  rebuild_ann();
}

VectorIndex::~VectorIndex() = default;

size_t VectorIndex::size() const {
  auto lock = read_lock();
  return slot_of_.size();
}

bool VectorIndex::trained() const {
  auto lock = read_lock();
  return options_.kind != IndexKind::kIvf || ivf_ != nullptr;
}

int VectorIndex::ivf_nlist() const {
  auto lock = read_lock();
  return ivf_ ? static_cast<int>(ivf_->nlist()) : 0;
}

bool VectorIndex::contains(const std::string& id) const {
  auto lock = read_lock();
  return slot_of_.count(id) != 0;
}

bool VectorIndex::ivf_should_train() const {
  if (options_.kind != IndexKind::kIvf) return false;
  const size_t live = slot_of_.size();
  if (training_) return false;
  if (!ivf_) {
    return live >= std::max(kIvfTrainMinItems, kIvfMinPointsPerCell * static_cast<size_t>(options_.ivf_nlist));
  }
  // A fixed nlist never needs retraining for growth; an automatic one follows n.
  const bool grown = options_.ivf_nlist == 0 && live >= kIvfRetrainGrowth * ivf_trained_at_ &&
                     auto_nlist(live) > ivf_->nlist();
  const bool drifted = ivf_train_distance_ > 0 &&
                       drift_count_ >= std::max(kIvfDriftMinItems, ivf_trained_at_ / 10) &&
                       drift_sum_ / static_cast<double>(drift_count_) > kIvfDriftFactor * ivf_train_distance_;
  return grown || drifted;
}

double VectorIndex::ivf_train_distance() const {
  auto lock = read_lock();
  return ivf_train_distance_;
}

double VectorIndex::ivf_added_distance() const {
  auto lock = read_lock();
  return drift_count_ > 0 ? drift_sum_ / static_cast<double>(drift_count_) : 0.0;
}

void VectorIndex::set_background_training(bool on) {
  auto lock = write_lock();
  background_training_ = on;
}

size_t VectorIndex::ivf_default_nprobe() const {
  const size_t nlist = ivf_->nlist();
  if (options_.ivf_nprobe > 0) return std::min<size_t>(options_.ivf_nprobe, nlist);
  return std::min<size_t>(nlist, std::max<size_t>(8, nlist / 16));
}

std::unique_ptr<faiss::Index> VectorIndex::new_hnsw() const { return index_internal::new_hnsw_index(dim_, options_); }

void VectorIndex::add_slots(faiss::Index& target, size_t first_slot, size_t count) const {
  if (count == 0) return;
  const float* x = vectors_.data() + first_slot * dim_;
  target.add(static_cast<idx_t>(count), x);  // HNSW labels are insertion order = slot numbers
}

void VectorIndex::add_to_ivf(size_t first, size_t count) {
  if (count == 0) return;
  // Assign once, and keep the cosines: they are the drift measure.
  std::vector<float> cosine(count);
  std::vector<int32_t> cell(count);
  ivf_->assign(vectors_.data() + first * dim_, count, cell.data(), cosine.data());
  ivf_->append(first, cell.data(), vectors_.data() + first * dim_, count);
  for (size_t i = 0; i < count; ++i) drift_sum_ += 1.0 - static_cast<double>(cosine[i]);
  drift_count_ += count;
}

void VectorIndex::rebuild_ann() {
  try {
    if (options_.kind == IndexKind::kHnsw) {
      ann_.reset();
      auto hnsw = new_hnsw();
      add_slots(*hnsw, 0, slots());
      ann_ = std::move(hnsw);
    } else if (ivf_) {
      // The cells stay valid; the lists follow the (renumbered) slots.
      std::vector<int32_t> cells = ivf_->cell_of();
      cells.resize(slots(), -1);
      ivf_->rebuild(std::move(cells), vectors_.data());
    }
  } catch (const std::exception& e) {
    ann_.reset();  // searches fall back to exact until the next rebuild
    ivf_.reset();
    throw internal_error(std::string("rebuilding the ") + index_kind_name(options_.kind) + " index failed: " + e.what());
  }
}

void VectorIndex::train_ivf(std::vector<float> x, std::vector<idx_t> labels, size_t snapshot_slots,
                            uint64_t snapshot_layout) {
  const size_t n = labels.size();
  std::unique_ptr<index_internal::IvfCells> cells;
  std::vector<int32_t> cell(n);
  double distance = 0;
  try {
    const size_t nlist = options_.ivf_nlist > 0 ? static_cast<size_t>(options_.ivf_nlist) : auto_nlist(n);
    cells = index_internal::IvfCells::train(dim_, nlist, x.data(), n, kIvfTrainIterations);
    std::vector<float> cosine(n);
    cells->assign(x.data(), n, cell.data(), cosine.data());
    for (float c : cosine) distance += 1.0 - static_cast<double>(c);
    distance /= static_cast<double>(std::max<size_t>(n, 1));
  } catch (const std::exception&) {
    // The items are in; the index keeps its old cells (or exact search) and
    // the next add() tries again. Failing the add would make callers retry
    // items that are already there.
    auto lock = write_lock();
    training_ = false;
    return;
  }
  auto lock = write_lock();
  training_ = false;
  try {
    if (snapshot_layout != layout_version_) {
      // Slots were renumbered meanwhile: assign them all afresh.
      std::vector<int32_t> all(slots());
      std::vector<float> cosine(slots());
      cells->assign(vectors_.data(), slots(), all.data(), cosine.data());
      for (size_t s = 0; s < slots(); ++s) {
        if (!live_[s]) all[s] = -1;
      }
      cells->rebuild(std::move(all), vectors_.data());
    } else {
      std::vector<int32_t> listed(snapshot_slots, -1);  // tombstones at the snapshot stay unlisted
      for (size_t i = 0; i < n; ++i) listed[static_cast<size_t>(labels[i])] = cell[i];
      cells->rebuild(std::move(listed), vectors_.data());
    }
  } catch (const std::exception&) {
    return;  // as above: keep the old cells, retry on the next add()
  }
  ivf_ = std::move(cells);
  ivf_train_distance_ = distance;
  drift_sum_ = 0;
  drift_count_ = 0;
  ivf_trained_at_ = n;
  if (snapshot_layout == layout_version_) add_to_ivf(snapshot_slots, slots() - snapshot_slots);  // added while training
}

bool VectorIndex::take_training_snapshot(std::vector<float>* x, std::vector<idx_t>* labels, size_t* snapshot_slots,
                                         uint64_t* snapshot_layout) {
  if (!ivf_should_train()) return false;
  training_ = true;
  x->reserve(slot_of_.size() * dim_);
  labels->reserve(slot_of_.size());
  for (size_t s = 0; s < slots(); ++s) {
    if (!live_[s]) continue;
    x->insert(x->end(), vectors_.begin() + s * dim_, vectors_.begin() + (s + 1) * dim_);
    labels->push_back(static_cast<idx_t>(s));
  }
  *snapshot_slots = slots();
  *snapshot_layout = layout_version_;
  return true;
}

bool VectorIndex::train_if_due() {
  {
    auto lock = read_lock();
    if (!ivf_should_train()) return false;
  }
  std::vector<float> x;
  std::vector<idx_t> labels;
  size_t snapshot_slots = 0;
  uint64_t snapshot_layout = 0;
  {
    auto lock = write_lock();
    if (!take_training_snapshot(&x, &labels, &snapshot_slots, &snapshot_layout)) return false;
  }
  train_ivf(std::move(x), std::move(labels), snapshot_slots, snapshot_layout);
  return true;
}

void VectorIndex::compact_and_rebuild() {
  if (dead_ > 0) {
    std::vector<int32_t> cells;  // IVF: each kept slot's cell, renumbered with it
    size_t w = 0;
    for (size_t s = 0; s < slots(); ++s) {
      if (!live_[s]) continue;
      if (ivf_) cells.push_back(s < ivf_->cell_of().size() ? ivf_->cell_of()[s] : -1);
      if (w != s) {
        std::copy_n(vectors_.begin() + s * dim_, dim_, vectors_.begin() + w * dim_);
        ids_[w] = std::move(ids_[s]);
        metadata_[w] = std::move(metadata_[s]);
        live_[w] = 1;
      }
      slot_of_[ids_[w]] = w;
      ++w;
    }
    vectors_.resize(w * dim_);
    vectors_.shrink_to_fit();
    ids_.resize(w);
    metadata_.resize(w);
    live_.resize(w);
    dead_ = 0;
    ++layout_version_;
    if (ivf_) ivf_->rebuild(std::move(cells), vectors_.data());
  }
  if (!ivf_) rebuild_ann();  // IVF: rebuilt just above (or unchanged)
}

std::vector<float> VectorIndex::flatten(const std::vector<std::string>& ids,
                                        const std::vector<std::vector<float>>& vectors, int dim) {
  if (ids.size() != vectors.size()) {
    throw invalid_argument("got " + std::to_string(ids.size()) + " ids for " + std::to_string(vectors.size()) +
                           " vectors");
  }
  std::vector<float> flat;
  flat.reserve(vectors.size() * dim);
  for (size_t i = 0; i < vectors.size(); ++i) {
    if (vectors[i].size() != static_cast<size_t>(dim)) {
      throw invalid_argument(item_name(i, ids[i]) + " has " + std::to_string(vectors[i].size()) +
                             " values; the index holds " + std::to_string(dim) + "-dimensional vectors");
    }
    flat.insert(flat.end(), vectors[i].begin(), vectors[i].end());
  }
  return flat;
}

AddResult VectorIndex::add(const std::vector<std::string>& ids, const std::vector<std::vector<float>>& vectors,
                           const std::vector<std::string>& metadata, bool upsert) {
  const std::vector<float> flat = flatten(ids, vectors, dim_);
  return add(ids, flat.data(), vectors.size(), metadata, upsert);
}

AddResult VectorIndex::add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                           const std::vector<std::string>& metadata, bool upsert) {
  if (ids.size() != n) {
    throw invalid_argument("got " + std::to_string(ids.size()) + " ids for " + std::to_string(n) + " vectors");
  }
  if (!metadata.empty() && metadata.size() != n) {
    throw invalid_argument("got " + std::to_string(metadata.size()) + " metadata strings for " + std::to_string(n) +
                           " items");
  }
  if (n == 0) return {};
  if (vectors == nullptr) throw invalid_argument("no vectors given for " + std::to_string(n) + " items");
  AddResult result;
  std::vector<float> train;  // IVF training snapshot, taken under the lock
  std::vector<idx_t> labels;
  size_t snapshot_slots = 0;
  uint64_t snapshot_layout = 0;
  bool train_now = false;
  {
    auto lock = write_lock();
    result = add_locked(ids, vectors, n, metadata, upsert);
    if (!background_training_) {
      train_now = take_training_snapshot(&train, &labels, &snapshot_slots, &snapshot_layout);
    }
  }
  // k-means runs unlocked: searches go on, over the old cells or exactly.
  if (train_now) train_ivf(std::move(train), std::move(labels), snapshot_slots, snapshot_layout);
  return result;
}

void VectorIndex::check_add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                            const std::vector<std::string>& metadata, bool upsert) const {
  if (ids.size() != n) {
    throw invalid_argument("got " + std::to_string(ids.size()) + " ids for " + std::to_string(n) + " vectors");
  }
  if (!metadata.empty() && metadata.size() != n) {
    throw invalid_argument("got " + std::to_string(metadata.size()) + " metadata strings for " + std::to_string(n) +
                           " items");
  }
  if (n == 0) return;
  if (vectors == nullptr) throw invalid_argument("no vectors given for " + std::to_string(n) + " items");
  std::vector<size_t> replaced;
  auto lock = read_lock();
  prepare_add(ids, vectors, n, metadata, upsert, &replaced, /*check_only=*/true);
}

std::vector<float> VectorIndex::prepare_add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                                            const std::vector<std::string>& metadata, bool upsert,
                                            std::vector<size_t>* replaced_slots, bool check_only) const {
  (void)metadata;  // any string; its count was checked by the caller
  std::unordered_map<std::string, size_t> in_call;
  in_call.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& id = ids[i];
    if (id.empty()) throw invalid_argument(item_name(i, id) + " has an empty id");
    auto [it, fresh] = in_call.emplace(id, i);
    if (!fresh) {
      throw invalid_argument("duplicate id " + in_quotes(id) + " at items " + std::to_string(it->second) + " and " +
                             std::to_string(i));
    }
    auto existing = slot_of_.find(id);
    if (existing != slot_of_.end()) {
      if (!upsert) {
        throw invalid_argument("id " + in_quotes(id) + " (item " + std::to_string(i) +
                               ") already exists in the index; use upsert to replace it");
      }
      replaced_slots->push_back(existing->second);
    }
  }
  std::vector<float> rows(check_only ? dim_ : n * dim_);  // checking: one row of scratch
  for (size_t i = 0; i < n; ++i) {
    std::string problem = normalize_row(vectors + i * dim_, rows.data() + (check_only ? 0 : i * dim_), dim_);
    if (!problem.empty()) throw invalid_argument(item_name(i, ids[i]) + ": " + problem);
  }
  if (check_only) rows.clear();
  return rows;
}

AddResult VectorIndex::add_locked(const std::vector<std::string>& ids, const float* vectors, size_t n,
                                  const std::vector<std::string>& metadata, bool upsert) {
  // Validate everything before touching the index: all or nothing.
  std::vector<size_t> replaced_slots;
  const std::vector<float> rows = prepare_add(ids, vectors, n, metadata, upsert, &replaced_slots);

  // Commit. Reserve first so the appends below cannot throw half-way; grow
  // geometrically, or a stream of single adds copies the index every time.
  const size_t first = slots();
  reserve_more(vectors_, rows.size());
  reserve_more(ids_, n);
  reserve_more(metadata_, n);
  reserve_more(live_, n);
  slot_of_.reserve(slot_of_.size() + n);
  vectors_.insert(vectors_.end(), rows.begin(), rows.end());
  for (size_t i = 0; i < n; ++i) {
    ids_.push_back(ids[i]);
    metadata_.push_back(metadata.empty() ? std::string() : metadata[i]);
    live_.push_back(1);
  }
  for (size_t s : replaced_slots) live_[s] = 0;  // upsert: the old version becomes a tombstone
  dead_ += replaced_slots.size();
  for (size_t i = 0; i < n; ++i) slot_of_[ids[i]] = first + i;

  try {
    if (ivf_) {
      add_to_ivf(first, n);
    } else if (ann_) {
      add_slots(*ann_, first, n);
    }
  } catch (const std::exception& e) {
    // Undo, so the index is exactly as before the call.
    for (size_t i = 0; i < n; ++i) slot_of_.erase(ids[i]);
    for (size_t s : replaced_slots) {
      live_[s] = 1;
      slot_of_[ids_[s]] = s;
    }
    dead_ -= replaced_slots.size();
    vectors_.resize(first * dim_);
    ids_.resize(first);
    metadata_.resize(first);
    live_.resize(first);
    ++layout_version_;
    try {
      rebuild_ann();  // drop what FAISS took in
    } catch (...) {
      // ann_/ivf_ are null now: searches are exact until the next rebuild
    }
    throw internal_error(std::string("adding ") + std::to_string(n) + " items to the FAISS index failed: " + e.what());
  }

  if (static_cast<double>(dead_) > kCompactDeadFraction * slots()) compact_and_rebuild();
  return {n - replaced_slots.size(), replaced_slots.size()};
}

size_t VectorIndex::remove(const std::vector<std::string>& ids) {
  auto lock = write_lock();
  size_t removed = 0;
  for (const std::string& id : ids) {
    auto it = slot_of_.find(id);
    if (it == slot_of_.end()) continue;
    live_[it->second] = 0;
    slot_of_.erase(it);
    ++dead_;
    ++removed;
  }
  if (removed > 0 && static_cast<double>(dead_) > kCompactDeadFraction * slots()) compact_and_rebuild();
  return removed;
}

std::vector<SearchHit> VectorIndex::search(const std::vector<float>& query, int k, const SearchParams& params) const {
  if (query.size() != static_cast<size_t>(dim_)) {
    throw invalid_argument("the query has " + std::to_string(query.size()) + " values; the index holds " +
                           std::to_string(dim_) + "-dimensional vectors");
  }
  return std::move(search(query.data(), 1, k, params)[0]);
}

std::vector<std::vector<SearchHit>> VectorIndex::search(const float* queries, size_t nq, int k,
                                                        const SearchParams& params) const {
  if (k < 1 || k > kMaxK) {
    throw invalid_argument("k = " + std::to_string(k) + " is out of range [1, " + std::to_string(kMaxK) + "]");
  }
  if (params.ivf_nprobe < 0) throw invalid_argument("ivf_nprobe = " + std::to_string(params.ivf_nprobe) + " is negative");
  if (params.hnsw_ef_search < 0) {
    throw invalid_argument("hnsw_ef_search = " + std::to_string(params.hnsw_ef_search) + " is negative");
  }
  std::vector<std::vector<SearchHit>> results(nq);
  if (nq == 0) return results;
  if (queries == nullptr) throw invalid_argument("no query vectors given");
  std::vector<float> q(nq * dim_);
  for (size_t i = 0; i < nq; ++i) {
    std::string problem = normalize_row(queries + i * dim_, q.data() + i * dim_, dim_);
    if (!problem.empty()) throw invalid_argument("query " + std::to_string(i) + ": " + problem);
  }

  auto lock = read_lock();
  const size_t want = std::min<size_t>(static_cast<size_t>(k), slot_of_.size());
  if (want == 0) return results;
  ScopedOmpThreads threads(nq);
  LiveSlots live_slots(live_.data(), live_.size());
  const faiss::IDSelector* sel = dead_ > 0 ? &live_slots : nullptr;
  const index_internal::IvfCells* ivf = ivf_.get();
  const bool approximate = ann_ || ivf;
  size_t nprobe = 0;
  int ef = 0;
  if (ivf) {
    nprobe = params.ivf_nprobe > 0 ? std::min<size_t>(params.ivf_nprobe, ivf->nlist()) : ivf_default_nprobe();
  } else if (ann_) {
    ef = std::max<int>(params.hnsw_ef_search > 0 ? params.hnsw_ef_search : options_.hnsw_ef_search,
                       static_cast<int>(want));
  }

  // How many results a pass asks FAISS for. FAISS 1.7.3 sizes the HNSW
  // candidate queue as max(hnsw.efSearch, k) from the shared index, and only
  // reads SearchParametersHNSW::efSearch for its stopping rule; so the
  // shared efSearch is kept at 1 and a per-call ef is obtained race-free by
  // asking for ef results (the visited nodes do not depend on k) and keeping
  // the best `want`.
  auto fetch_count = [&](int pass) -> size_t {
    if (!approximate || ivf || pass == 2) return want;
    const size_t e = static_cast<size_t>(ef) * (pass == 0 ? 1 : 4);
    return std::max(want, std::min(e, slots()));  // more than every slot buys nothing
  };
  // One pass over n queries; `pass` = 0 as asked, 1 wider, 2 exact.
  const uint8_t* live = dead_ > 0 ? live_.data() : nullptr;
  auto run = [&](int pass, const float* x, size_t n, std::vector<float>& D, std::vector<idx_t>& I) {
    const size_t kf = fetch_count(pass);
    D.resize(n * kf);
    I.resize(n * kf);
    try {
      if ((!approximate || pass == 2) && n >= kBlasBatch) {
        // Many queries: FAISS's blocked BLAS scan beats one scan per query.
        faiss::knn_inner_product(x, vectors_.data(), dim_, n, slots(), kf, D.data(), I.data(), sel);
      } else if (!approximate || pass == 2) {
#pragma omp parallel for if (n > 1)
        for (size_t i = 0; i < n; ++i) {
          exact_top_k(x + i * dim_, vectors_.data(), slots(), dim_, kf, live, &D[i * kf], &I[i * kf]);
        }
      } else if (ivf) {
        const size_t probes = pass == 0 ? nprobe : std::min<size_t>(ivf->nlist(), nprobe * 4);
#pragma omp parallel for if (n > 1)
        for (size_t i = 0; i < n; ++i) {
          ivf_top_k(*ivf, x + i * dim_, probes, kf, live, &D[i * kf], &I[i * kf]);
        }
      } else {
        faiss::SearchParametersHNSW p;
        p.sel = const_cast<faiss::IDSelector*>(sel);
        p.efSearch = static_cast<int>(kf);
        ann_->search(static_cast<idx_t>(n), x, static_cast<idx_t>(kf), D.data(), I.data(), &p);
      }
    } catch (const faiss::FaissException& e) {
      throw internal_error(std::string("FAISS search failed: ") + e.what());
    }
    return kf;
  };
  // FAISS returns each row best first, padded with label -1.
  auto collect = [&](const float* D, const idx_t* I, size_t kf, std::vector<SearchHit>& out) {
    out.clear();
    for (size_t j = 0; j < kf && out.size() < want; ++j) {
      const idx_t s = I[j];
      if (s < 0 || static_cast<size_t>(s) >= slots() || !live_[s]) continue;
      out.push_back({ids_[s], std::clamp(D[j], -1.0f, 1.0f), metadata_[s]});
    }
  };

  std::vector<float> D;
  std::vector<idx_t> I;
  const size_t kf = run(0, q.data(), nq, D, I);
  std::vector<float> D1;
  std::vector<idx_t> I1;
  for (size_t i = 0; i < nq; ++i) {
    collect(D.data() + i * kf, I.data() + i * kf, kf, results[i]);
    // Short (tombstones crowded the candidates, or nprobe/ef were tiny):
    // widen once, then fall back to exact, so min(k, size) hits come back.
    for (int pass = 1; results[i].size() < want && pass <= 2 && approximate; ++pass) {
      const size_t kf1 = run(pass, q.data() + i * dim_, 1, D1, I1);
      collect(D1.data(), I1.data(), kf1, results[i]);
    }
  }
  return results;
}

}  // namespace refinery
