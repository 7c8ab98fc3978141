// Every named vector index the server holds, persisted under
// <data_dir>/indexes/<name>/:
//   index.json   name, bound model "name@version", dim, options, created_unix_ms
//   vectors/     the last snapshot (VectorIndex::save's atomic directory)
//   log/         the write-ahead log of changes since (see PersistentIndex)
// The constructor reloads them all (snapshot + log replay); an index that
// fails to load is logged and skipped (see broken()), never fatal. add() and
// remove() return once the change is logged durably; a failed log write
// changes nothing. A background thread runs maintain() every
// `maintain_every`: IVF (re)training and checkpoints.
//
// No gRPC and no LibTorch here: the IndexService embeds texts and images and
// calls this with vectors.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/index/persistent_index.h"
#include "core/index/vector_index.h"

namespace refinery {

struct IndexInfo {
  std::string name;
  std::string model;  // "name@version" the index is bound to
  int dim = 0;
  IndexOptions options;
  int64_t created_unix_ms = 0;
  int64_t size = 0;      // live items now
  bool trained = false;  // IVF: whether the cells exist yet; other kinds: true
  uint64_t log_bytes = 0;       // write-ahead log since the last snapshot
  uint64_t snapshot_bytes = 0;  // the last snapshot on disk
  double last_checkpoint_seconds = 0;  // 0: none since start
};

struct AddItemsResult {
  size_t added = 0;     // new ids
  size_t replaced = 0;  // ids overwritten by an upsert
  size_t size = 0;      // items in the index afterwards
};

struct RemoveItemsResult {
  size_t deleted = 0;  // ids that existed (unknown ids are ignored)
  size_t size = 0;
};

struct IndexRegistryOptions {
  PersistentIndexOptions persistence;
  // How often the background thread trains due IVF cells and writes due
  // checkpoints; zero: no thread (call maintain() yourself).
  std::chrono::milliseconds maintain_every{1000};
};

// One index as the registry serves it; outlives a drop() while held.
// Search through index(); change it through IndexRegistry::add/remove.
class IndexHandle {
 public:
  IndexInfo info() const;  // with the current size and trained flag
  std::shared_ptr<const VectorIndex> index() const { return store_->index(); }
  PersistentIndexStats persistence() const { return store_->stats(); }

 private:
  friend class IndexRegistry;
  IndexHandle(IndexInfo info, std::unique_ptr<PersistentIndex> store)
      : info_(std::move(info)), store_(std::move(store)) {}

  const IndexInfo info_;  // size/trained filled in by info()
  const std::unique_ptr<PersistentIndex> store_;  // in <data_dir>/indexes/<name>
};

class IndexRegistry {
 public:
  static constexpr size_t kMaxNameLength = 128;

  // Loads every index under <data_dir>/indexes, creating the folder if needed.
  explicit IndexRegistry(std::string data_dir, const IndexRegistryOptions& options = {});
  ~IndexRegistry();
  IndexRegistry(const IndexRegistry&) = delete;
  IndexRegistry& operator=(const IndexRegistry&) = delete;

  // Names: [A-Za-z0-9._-]{1,128}, not "." or ".."; model_ref: "name@version".
  // invalid_argument naming a bad name/ref/dim/option; FAILED_PRECONDITION
  // when the name exists (or its folder is on disk, e.g. a broken index).
  IndexInfo create(const std::string& name, const std::string& model_ref, int dim, const IndexOptions& options);
  // Deletes the index and its files; not_found naming it. Drops broken ones too.
  void drop(const std::string& name);
  // not_found naming it; FAILED_PRECONDITION with the reason for an index
  // whose folder failed to load at start (see broken()).
  std::shared_ptr<const IndexHandle> get(const std::string& name) const;
  std::vector<IndexInfo> list() const;  // loaded indexes, by name

  // VectorIndex::add / remove on the named index, durable before returning.
  AddItemsResult add(const std::string& name, const std::vector<std::string>& ids, const float* vectors, size_t n,
                     const std::vector<std::string>& metadata = {}, bool upsert = false);
  AddItemsResult add(const std::string& name, const std::vector<std::string>& ids,
                     const std::vector<std::vector<float>>& vectors, const std::vector<std::string>& metadata = {},
                     bool upsert = false);
  RemoveItemsResult remove(const std::string& name, const std::vector<std::string>& ids);

  // One round of upkeep over every index (what the background thread does):
  // IVF cells trained when due (and then checkpointed, so a restart keeps
  // them), checkpoints when a log has grown. Errors are logged, not thrown.
  void maintain();

  // Indexes whose folder failed to load at start: name -> why.
  std::map<std::string, std::string> broken() const;
  static bool valid_name(const std::string& name);

 private:
  std::shared_ptr<IndexHandle> find(const std::string& name) const;
  void load_one(const std::string& name);
  void maintain_loop();

  std::string root_;  // <data_dir>/indexes
  const IndexRegistryOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<IndexHandle>> indexes_;
  std::map<std::string, std::string> broken_;
  std::set<std::string> dropping_;  // names whose folder is being deleted

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread maintainer_;  // last: started once everything above is loaded
};

}  // namespace refinery
