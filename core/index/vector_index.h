// A cosine-similarity vector index over FAISS, keyed by string ids with an
// opaque JSON metadata string per item. Torch-free: the server embeds texts
// and images and hands this class plain float vectors.
//
// Vectors are L2-normalised on add and query and compared by inner product,
// so every score is a cosine similarity in [-1, 1]. Kinds:
//   FLAT  exact (FAISS brute force over the stored vectors).
//   IVF   inverted lists over k-means cells, trained on the items present once
//         there are kIvfTrainMinItems (exact search until then) and retrained
//         when, with an automatic nlist, the items grew kIvfRetrainGrowth-fold
//         or when the data has drifted: the items added since training sit
//         kIvfDriftFactor times farther from their nearest cell centre (mean
//         1 - cosine) than the training items did. k-means runs outside the
//         lock: searches go on meanwhile. By default the add() that makes
//         training due runs it; with set_background_training(true) add() only
//         notes it and train_if_due() (a maintenance thread's call) runs it.
//   HNSW  a graph (IndexHNSWFlat); per-call ef via SearchParams.
//
// Deletion: an item's slot is tombstoned and filtered out of every search
// (FAISS IDSelector); slots are compacted, and the FAISS structure rebuilt
// (for HNSW: the whole graph), once tombstones exceed kCompactDeadFraction of
// the slots. A search returns min(k, size()) hits: if an approximate search
// comes back short (tombstones, tiny nprobe/ef), it is retried wider and
// finally exactly.
//
// Thread safety: any number of concurrent search()/save()/accessor calls;
// add()/remove() are exclusive and preferred over new searches, so a stream
// of searches cannot starve them (inserting into HNSW, or compacting, stalls
// searches for that long). save() holds a shared lock: searches go on, writes
// wait. One save() or load() per directory at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/index/index_options.h"

namespace faiss {
struct Index;
}
namespace refinery::index_internal {
class IvfCells;
}

namespace refinery {

struct SearchHit {
  std::string id;
  float score = 0;  // cosine similarity
  std::string metadata_json;
};

struct AddResult {
  size_t added = 0;     // new ids
  size_t replaced = 0;  // existing ids overwritten by an upsert
};

class VectorIndex {
 public:
  // IVF trains once this many live items exist (and at least
  // kIvfMinPointsPerCell per requested cell); until then it searches exactly.
  static constexpr size_t kIvfTrainMinItems = 2000;
  // FAISS's k-means wants at least 39 points per cell; fewer gives poor cells.
  static constexpr size_t kIvfMinPointsPerCell = 39;
  // With an automatic nlist, the cells are retrained when the live items grow
  // by this factor since the last training, so nlist keeps up with n.
  static constexpr size_t kIvfRetrainGrowth = 4;
  // Drift: retrain once at least max(kIvfDriftMinItems, a tenth of the
  // trained items) were added since training and their mean distance to the
  // nearest centre is this factor above the training items'.
  static constexpr double kIvfDriftFactor = 1.25;
  static constexpr size_t kIvfDriftMinItems = 1000;
  // Compact (and rebuild the FAISS structure) once this fraction of slots are
  // tombstones: bounds the memory and search time spent on deleted items.
  static constexpr double kCompactDeadFraction = 0.25;
  static constexpr int kMaxK = 10000;
  static constexpr int kMaxDim = 65536;

  explicit VectorIndex(int dim, const IndexOptions& options = {});
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  // Adds n items; `vectors` holds n * dim() floats, row-major. `metadata` is
  // empty (no metadata) or holds n JSON strings. All or nothing: an empty or
  // duplicate id, an existing id without `upsert`, or a NaN/inf/all-zero
  // vector throws invalid_argument naming the item and changes nothing.
  // With `upsert`, an existing id gets the new vector and metadata.
  AddResult add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                const std::vector<std::string>& metadata = {}, bool upsert = false);
  // The same with one vector per item, so a wrong length names its item.
  // One vector per item as n * dim() row-major floats: invalid_argument for
  // a count that differs from the ids' or a wrong length (naming the item).
  static std::vector<float> flatten(const std::vector<std::string>& ids, const std::vector<std::vector<float>>& vectors,
                                    int dim);
  AddResult add(const std::vector<std::string>& ids, const std::vector<std::vector<float>>& vectors,
                const std::vector<std::string>& metadata = {}, bool upsert = false);

  // Throws exactly what add() with these arguments would throw now, changing
  // nothing: lets a caller log a change before applying it.
  void check_add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                 const std::vector<std::string>& metadata = {}, bool upsert = false) const;

  // Deletes the items with these ids and returns how many existed; unknown
  // (or repeated) ids are ignored, so the count tells the caller which case.
  size_t remove(const std::vector<std::string>& ids);

  // For each of nq queries (nq * dim() floats), up to min(k, size()) hits,
  // best first. invalid_argument for k outside [1, kMaxK], a negative knob or
  // a NaN/inf/all-zero query (naming the query index).
  std::vector<std::vector<SearchHit>> search(const float* queries, size_t nq, int k,
                                             const SearchParams& params = {}) const;
  std::vector<SearchHit> search(const std::vector<float>& query, int k, const SearchParams& params = {}) const;

  int dim() const { return dim_; }
  const IndexOptions& options() const { return options_; }
  size_t size() const;     // live items
  bool trained() const;    // IVF: whether the cells exist; other kinds: true
  int ivf_nlist() const;   // IVF cells in use; 0 while untrained or not IVF
  bool contains(const std::string& id) const;
  // IVF drift: mean (1 - cosine to the nearest centre) of the training items
  // and of the items added since; 0 when unknown.
  double ivf_train_distance() const;
  double ivf_added_distance() const;

  // With true, add() never trains IVF cells itself; train_if_due() does.
  void set_background_training(bool on);
  // Trains (or retrains) the IVF cells if due; returns whether it did.
  bool train_if_due();

  // Persists the index into `dir` atomically; see vector_index_storage.cpp for the
  // protocol. Siblings `dir`.tmp and `dir`.old are used on the way.
  // `log_segment` is stored with it: the first write-ahead log segment whose
  // changes the snapshot does not hold (see IndexLog).
  void save(const std::string& dir, uint64_t log_segment = 0) const;
  // Loads what save() wrote, first repairing an interrupted save (recover()).
  // A missing dir is not_found; a corrupt or truncated file is
  // invalid_argument naming the file. `log_segment` receives what save() stored.
  // `room_bytes`: room for that many bytes more of vectors (items of dim()
  // floats), allocated with the loaded ones, so a log replay that follows
  // never copies the index to grow it.
  static std::unique_ptr<VectorIndex> load(const std::string& dir, uint64_t* log_segment = nullptr,
                                           uint64_t room_bytes = 0);
  // Finishes or rolls back a save() interrupted by a crash, leaving `dir` as
  // the last complete state and no `dir`.tmp / `dir`.old behind.
  static void recover(const std::string& dir);

 private:
  size_t slots() const { return ids_.size(); }
  AddResult add_locked(const std::vector<std::string>& ids, const float* vectors, size_t n,
                       const std::vector<std::string>& metadata, bool upsert);
  // Validates an add against the current items; returns the normalised rows
  // (none with `check_only`) and fills the slots an upsert replaces. Throws
  // invalid_argument.
  std::vector<float> prepare_add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                                 const std::vector<std::string>& metadata, bool upsert,
                                 std::vector<size_t>* replaced_slots, bool check_only = false) const;
  // Lists slots [first, first + count) in the trained IVF cells, measuring drift.
  void add_to_ivf(size_t first, size_t count);
  // Under the write lock: if training is due, snapshots the live items into
  // the arguments and marks training under way.
  bool take_training_snapshot(std::vector<float>* x, std::vector<int64_t>* labels, size_t* snapshot_slots,
                              uint64_t* snapshot_layout);
  void compact_and_rebuild();  // drops tombstones, rebuilds the FAISS structure
  // Recreates ann_ over every slot: a new HNSW graph, or the IVF lists under
  // the existing cells. Never trains.
  void rebuild_ann();
  std::unique_ptr<faiss::Index> new_hnsw() const;
  void add_slots(faiss::Index& target, size_t first_slot, size_t count) const;
  // Trains IVF cells on a snapshot of the live items without holding the
  // lock, then swaps them in, listing items added meanwhile.
  void train_ivf(std::vector<float> x, std::vector<int64_t> labels, size_t snapshot_slots, uint64_t snapshot_layout);
  bool ivf_should_train() const;
  size_t ivf_default_nprobe() const;

  // glibc's shared_mutex prefers readers, so a steady stream of searches
  // would starve add()/remove() forever. Writers hold gate_ while they wait
  // for mu_; readers pass through gate_, so they queue behind a waiting writer.
  std::shared_lock<std::shared_mutex> read_lock() const {
    std::lock_guard<std::mutex> gate(gate_);
    return std::shared_lock<std::shared_mutex>(mu_);
  }
  std::unique_lock<std::shared_mutex> write_lock() {
    std::lock_guard<std::mutex> gate(gate_);
    return std::unique_lock<std::shared_mutex>(mu_);
  }

  int dim_;
  IndexOptions options_;
  mutable std::mutex gate_;
  mutable std::shared_mutex mu_;
  // Slot s holds vectors_[s*dim_ .. +dim_) (normalised), ids_[s], metadata_[s];
  // FAISS labels are slot numbers. Tombstoned slots have live_[s] == 0.
  std::vector<float> vectors_;
  std::vector<std::string> ids_;
  std::vector<std::string> metadata_;
  std::vector<uint8_t> live_;
  std::unordered_map<std::string, size_t> slot_of_;  // live ids only
  size_t dead_ = 0;
  // HNSW over the slots; null for FLAT and IVF.
  std::unique_ptr<faiss::Index> ann_;
  // IVF cells listing the slots; null for FLAT, HNSW and untrained IVF
  // (which searches the vectors exactly).
  std::unique_ptr<index_internal::IvfCells> ivf_;
  size_t ivf_trained_at_ = 0;  // live items when the IVF cells were trained
  bool training_ = false;      // an IVF training run is under way (unlocked)
  bool background_training_ = false;
  double ivf_train_distance_ = 0;  // mean 1 - cos to the nearest centre at training
  double drift_sum_ = 0;           // of 1 - cos over items added since training
  size_t drift_count_ = 0;
  uint64_t layout_version_ = 0;  // bumped whenever slots are renumbered
};

}  // namespace refinery
