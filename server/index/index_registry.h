// Every named vector index the server holds, persisted under
// <data_dir>/indexes/<name>/:
//   index.json   name, bound model "name@version", dim, options, created_unix_ms
//   vectors/     the VectorIndex (VectorIndex::save's atomic directory)
// The constructor reloads them all; an index that fails to load is logged and
// skipped (see broken()), never fatal. add() and remove() persist the change
// before they return, atomically: a crash leaves the previous or the new
// state, and a failed save leaves memory as it was on disk.
//
// No gRPC and no LibTorch here: the IndexService embeds texts and images and
// calls this with vectors.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

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

// One index as the registry serves it; outlives a drop() while held.
// Search through index(); change it through IndexRegistry::add/remove, which
// persist.
class IndexHandle {
 public:
  IndexInfo info() const;  // with the current size and trained flag
  std::shared_ptr<const VectorIndex> index() const;

 private:
  friend class IndexRegistry;
  IndexHandle(IndexInfo info, std::string dir, std::shared_ptr<VectorIndex> index)
      : info_(std::move(info)), dir_(std::move(dir)), index_(std::move(index)) {}
  std::shared_ptr<VectorIndex> mutable_index() const;
  void replace_index(std::shared_ptr<VectorIndex> index);

  const IndexInfo info_;   // size/trained filled in by info()
  const std::string dir_;  // <data_dir>/indexes/<name>
  mutable std::mutex index_mu_;
  std::shared_ptr<VectorIndex> index_;  // guarded by index_mu_
  std::mutex write_mu_;                 // one change (apply + persist) at a time
  bool dropped_ = false;                // guarded by write_mu_
};

class IndexRegistry {
 public:
  static constexpr size_t kMaxNameLength = 128;

  // Loads every index under <data_dir>/indexes, creating the folder if needed.
  explicit IndexRegistry(std::string data_dir);

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

  // VectorIndex::add / remove on the named index, saved before returning.
  AddItemsResult add(const std::string& name, const std::vector<std::string>& ids, const float* vectors, size_t n,
                     const std::vector<std::string>& metadata = {}, bool upsert = false);
  AddItemsResult add(const std::string& name, const std::vector<std::string>& ids,
                     const std::vector<std::vector<float>>& vectors, const std::vector<std::string>& metadata = {},
                     bool upsert = false);
  RemoveItemsResult remove(const std::string& name, const std::vector<std::string>& ids);

  // Indexes whose folder failed to load at start: name -> why.
  std::map<std::string, std::string> broken() const;
  static bool valid_name(const std::string& name);

 private:
  std::shared_ptr<IndexHandle> find(const std::string& name) const;
  void load_one(const std::string& name);
  template <typename Apply>
  size_t apply_and_persist(const std::string& name, Apply&& apply);

  std::string root_;  // <data_dir>/indexes
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<IndexHandle>> indexes_;
  std::map<std::string, std::string> broken_;
  std::set<std::string> dropping_;  // names whose folder is being deleted
};

}  // namespace refinery
