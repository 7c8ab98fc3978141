// A VectorIndex kept on disk as a snapshot plus a write-ahead log:
//   `dir`/vectors/  the snapshot (VectorIndex::save's atomic directory), which
//                   records the first log segment it does not hold
//   `dir`/log/      the IndexLog segments since (or around) the snapshot
// add() and remove() validate, append one log record, apply the change in
// memory and return once the record is on disk; concurrent writers share an
// fdatasync (group commit). A change is never acknowledged before it is
// durable; searches may see it a moment earlier, while its sync runs.
// checkpoint() writes a fresh snapshot and deletes the segments it covers;
// maintain(), called by a background thread, (re)trains IVF cells when due
// and checkpoints once the log outgrows PersistentIndexOptions. Opening
// replays the log (consecutive plain adds in large batches).
//
// Thread safety: any number of concurrent calls. Writers (add, remove,
// checkpoint) are serialised; a checkpoint holds them back while it writes
// the snapshot, searches go on.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/index/vector_index.h"

namespace refinery {

class IndexLog;

struct PersistentIndexOptions {
  // A checkpoint is due once the log holds this many bytes and
  // `checkpoint_log_fraction` of the snapshot's size: a bigger index may
  // keep a longer log, so checkpoints (a full rewrite) stay rare.
  uint64_t checkpoint_min_log_bytes = uint64_t{64} << 20;
  double checkpoint_log_fraction = 0.25;
};

struct PersistentIndexStats {
  uint64_t log_bytes = 0;
  uint64_t log_records = 0;       // changes since the oldest segment on disk
  uint64_t snapshot_bytes = 0;
  uint64_t checkpoints = 0;       // written since open
  double last_checkpoint_seconds = 0;
  uint64_t replayed_records = 0;  // at open
  double open_seconds = 0;        // snapshot load + replay
  std::string log_repair;         // what opening cut off the log (IndexLog::repair), or empty
};

class PersistentIndex {
 public:
  // Writes an empty index (its snapshot) into `dir`, creating `dir` if
  // needed; open() it afterwards (after any rename of `dir`: an open index
  // keeps its path). invalid_argument for a bad dim or options.
  static void initialize(const std::string& dir, int dim, const IndexOptions& index_options);
  // Loads the snapshot and replays the log. not_found without a snapshot;
  // invalid_argument naming the damaged file (see IndexLog for what a crash
  // may leave and what counts as damage).
  static std::unique_ptr<PersistentIndex> open(const std::string& dir, const PersistentIndexOptions& options = {});
  ~PersistentIndex();
  PersistentIndex(const PersistentIndex&) = delete;
  PersistentIndex& operator=(const PersistentIndex&) = delete;

  // VectorIndex::add / remove, durable when they return. Validation errors
  // are the VectorIndex's and change nothing; a failed log write changes
  // nothing either (resource_exhausted when the disk is full).
  AddResult add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                const std::vector<std::string>& metadata = {}, bool upsert = false);
  size_t remove(const std::vector<std::string>& ids);

  std::shared_ptr<const VectorIndex> index() const { return index_; }
  const std::string& dir() const { return dir_; }

  bool checkpoint_due() const;
  // Snapshot now and drop the log it covers. A failed snapshot leaves the
  // last one and the whole log: nothing is lost.
  void checkpoint();
  // Background upkeep: trains IVF cells if due (and then checkpoints, so a
  // restart keeps them), checkpoints if the log is due. Returns whether it
  // did either.
  bool maintain();
  // Waits for the change or checkpoint in flight, then refuses further ones
  // (not_found naming the folder): for dropping the index. reopen() undoes
  // it (a drop that failed).
  void close();
  void reopen();

  PersistentIndexStats stats() const;

 private:
  PersistentIndex(std::string dir, std::shared_ptr<VectorIndex> index, const PersistentIndexOptions& options);
  void check_writable() const;  // write_mu_ held
  void checkpoint_locked();     // write_mu_ held
  void measure_snapshot();      // write_mu_ held

  const std::string dir_;
  const PersistentIndexOptions options_;
  std::shared_ptr<VectorIndex> index_;
  std::unique_ptr<IndexLog> log_;
  std::mutex write_mu_;  // orders log appends with the changes they describe
  bool closed_ = false;
  std::string failure_;  // a logged change that could not be applied
  mutable std::mutex stats_mu_;
  PersistentIndexStats stats_;
};

}  // namespace refinery
