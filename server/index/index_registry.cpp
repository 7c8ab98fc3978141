#include "server/index/index_registry.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/base/atomic_file.h"
#include "core/base/error.h"
#include "core/base/json_integer.h"
#include "core/base/remove_tree.h"
#include "server/runtime/log.h"

// Creating and dropping are atomic renames too:
//   create: write index.json and an empty vectors/ into <name>~creating,
//           fsync, rename it to <name>.
//   drop:   rename <name> to <name>~dropping, fsync, delete it.
// '~' never appears in an index name, so at start any folder holding one is
// the leftover of an interrupted create (never acknowledged) or drop (already
// acknowledged) and is deleted.

namespace refinery {
namespace {

namespace fs = std::filesystem;

constexpr const char* kInfoFile = "index.json";
constexpr const char* kVectorsDir = "vectors";
constexpr const char* kCreatingSuffix = "~creating";
constexpr const char* kDroppingSuffix = "~dropping";

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

int64_t now_unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

bool valid_model_ref(const std::string& ref) {
  const size_t at = ref.find('@');
  return at != std::string::npos && at > 0 && at + 1 < ref.size() && ref.find('@', at + 1) == std::string::npos;
}

nlohmann::json info_to_json(const IndexInfo& info) {
  const IndexOptions& o = info.options;
  return {{"name", info.name},
          {"model", info.model},
          {"dim", info.dim},
          {"options",
           {{"kind", index_kind_name(o.kind)},
            {"ivf_nlist", o.ivf_nlist},
            {"ivf_nprobe", o.ivf_nprobe},
            {"hnsw_m", o.hnsw_m},
            {"hnsw_ef_construction", o.hnsw_ef_construction},
            {"hnsw_ef_search", o.hnsw_ef_search}}},
          {"created_unix_ms", info.created_unix_ms}};
}

IndexInfo read_info(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  IndexInfo info;
  try {
    const auto j = nlohmann::json::parse(text.str());
    info.name = j.at("name").get<std::string>();
    info.model = j.at("model").get<std::string>();
    info.dim = json_integer<int>(j.at("dim"), "dim");
    info.created_unix_ms = json_integer<int64_t>(j.at("created_unix_ms"), "created_unix_ms");
    const auto& o = j.at("options");
    info.options.kind = parse_index_kind(o.at("kind").get<std::string>());
    info.options.ivf_nlist = json_integer<int>(o.at("ivf_nlist"), "options.ivf_nlist");
    info.options.ivf_nprobe = json_integer<int>(o.at("ivf_nprobe"), "options.ivf_nprobe");
    info.options.hnsw_m = json_integer<int>(o.at("hnsw_m"), "options.hnsw_m");
    info.options.hnsw_ef_construction = json_integer<int>(o.at("hnsw_ef_construction"), "options.hnsw_ef_construction");
    info.options.hnsw_ef_search = json_integer<int>(o.at("hnsw_ef_search"), "options.hnsw_ef_search");
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(path + ": " + e.what());
  } catch (const Error& e) {
    throw invalid_argument(path + ": " + e.what());
  }
  return info;
}

}  // namespace

// ---------------------------------------------------------------- IndexHandle

IndexInfo IndexHandle::info() const {
  IndexInfo info = info_;
  auto index = this->index();
  info.size = static_cast<int64_t>(index->size());
  info.trained = index->trained();
  const auto stats = store_->stats();
  info.log_bytes = stats.log_bytes;
  info.snapshot_bytes = stats.snapshot_bytes;
  info.last_checkpoint_seconds = stats.last_checkpoint_seconds;
  return info;
}

// ---------------------------------------------------------------- IndexRegistry

bool IndexRegistry::valid_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

IndexRegistry::IndexRegistry(std::string data_dir, const IndexRegistryOptions& options)
    : root_(std::move(data_dir) + "/indexes"), options_(options) {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) throw internal_error("cannot create the index folder " + root_ + ": " + ec.message());
  std::vector<std::string> names;
  for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) throw internal_error("cannot list " + root_ + ": " + ec.message());

  for (const std::string& name : names) {
    const std::string path = root_ + "/" + name;
    if (name.find('~') != std::string::npos) {
      log_info("index folder %s: leftover of an interrupted create or drop; deleting it", path.c_str());
      std::error_code rm;
      remove_tree(path, rm);
      if (rm) log_error("cannot delete %s: %s", path.c_str(), rm.message().c_str());
      continue;
    }
    if (!valid_name(name) || !fs::is_directory(path, ec)) {
      log_warning("ignoring %s: not an index folder", path.c_str());
      continue;
    }
    try {
      load_one(name);
    } catch (const std::exception& e) {
      // One bad index must not keep the server (and the other indexes) down.
      log_error("index %s: cannot load, skipping it: %s", in_quotes(name).c_str(), e.what());
      broken_[name] = e.what();
    }
  }
  log_info("loaded %zu vector indexes from %s (%zu broken)", indexes_.size(), root_.c_str(), broken_.size());
  if (options_.maintain_every.count() > 0) maintainer_ = std::thread([this] { maintain_loop(); });
}

IndexRegistry::~IndexRegistry() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (maintainer_.joinable()) maintainer_.join();
}

void IndexRegistry::maintain_loop() {
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stop_cv_.wait_for(lock, options_.maintain_every, [&] { return stopping_; })) {
    lock.unlock();
    maintain();
    lock.lock();
  }
}

void IndexRegistry::maintain() {
  std::vector<std::pair<std::string, std::shared_ptr<IndexHandle>>> handles;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& entry : indexes_) handles.push_back(entry);
  }
  for (const auto& [name, handle] : handles) {
    try {
      const auto start = std::chrono::steady_clock::now();
      if (handle->store_->maintain()) {
        const auto stats = handle->store_->stats();
        const auto index = handle->index();
        const std::string cells =
            index->options().kind == IndexKind::kIvf ? ", " + std::to_string(index->ivf_nlist()) + " IVF cells" : "";
        log_info("index %s: snapshot of %zu items written in %.2f s (%.1f MB%s)", in_quotes(name).c_str(),
                 index->size(), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                 static_cast<double>(stats.snapshot_bytes) / 1e6, cells.c_str());
      }
    } catch (const std::exception& e) {
      // The log still holds every change: nothing is lost, the next round retries.
      log_error("index %s: upkeep failed: %s", in_quotes(name).c_str(), e.what());
    }
  }
}

void IndexRegistry::load_one(const std::string& name) {
  const std::string dir = root_ + "/" + name;
  IndexInfo info = read_info(dir + "/" + kInfoFile);
  if (info.name != name) {
    throw invalid_argument(dir + "/" + kInfoFile + ": names index " + in_quotes(info.name) + ", not " + in_quotes(name));
  }
  std::unique_ptr<PersistentIndex> store = PersistentIndex::open(dir, options_.persistence);
  auto index = store->index();
  if (index->dim() != info.dim || index->options().kind != info.options.kind) {
    throw invalid_argument(dir + "/" + kVectorsDir + ": dimension or kind differs from " + kInfoFile);
  }
  info.options = index->options();
  const auto stats = store->stats();
  if (!stats.log_repair.empty()) {
    log_warning("index %s: %s (a change that was being written at a crash, never acknowledged)",
                in_quotes(name).c_str(), stats.log_repair.c_str());
  }
  if (stats.replayed_records > 0) {
    log_info("index %s: %zu items; replayed %llu logged changes in %.2f s", in_quotes(name).c_str(), index->size(),
             static_cast<unsigned long long>(stats.replayed_records), stats.open_seconds);
  }
  indexes_[name] = std::shared_ptr<IndexHandle>(new IndexHandle(std::move(info), std::move(store)));
}

IndexInfo IndexRegistry::create(const std::string& name, const std::string& model_ref, int dim,
                                const IndexOptions& options) {
  if (!valid_name(name)) {
    throw invalid_argument("invalid index name " + in_quotes(name) + ": use 1 to " + std::to_string(kMaxNameLength) +
                           " of A-Z a-z 0-9 . _ - (not \".\" or \"..\")");
  }
  if (!valid_model_ref(model_ref)) {
    throw invalid_argument("model reference " + in_quotes(model_ref) + " for index " + in_quotes(name) +
                           " is not of the form name@version");
  }
  const IndexOptions resolved = VectorIndex(dim, options).options();  // validates dim and options

  std::lock_guard<std::mutex> lock(mu_);
  const std::string dir = root_ + "/" + name;
  std::error_code ec;
  if (indexes_.count(name) || broken_.count(name) || dropping_.count(name) || fs::exists(dir, ec)) {
    throw Error(ErrorCode::kFailedPrecondition,
                "index " + in_quotes(name) + " already exists" +
                    (broken_.count(name) ? " (broken on disk: " + broken_.at(name) + "; drop it first)" : ""));
  }

  IndexInfo info;
  info.name = name;
  info.model = model_ref;
  info.dim = dim;
  info.options = resolved;
  info.created_unix_ms = now_unix_ms();

  const std::string staging = dir + kCreatingSuffix;
  try {
    remove_tree(staging);
    if (::mkdir(staging.c_str(), 0755) != 0) throw write_error("cannot create", staging, errno, ErrorCode::kInternal);
    write_file_atomically(staging + "/" + kInfoFile, info_to_json(info).dump(2) + "\n");
    PersistentIndex::initialize(staging, dim, resolved);  // fsyncs staging too
    rename_path(staging, dir);
    fsync_dir(root_);
  } catch (...) {
    remove_tree(staging, ec);
    throw;
  }
  auto store = PersistentIndex::open(dir, options_.persistence);
  info.trained = store->index()->trained();
  indexes_[name] = std::shared_ptr<IndexHandle>(new IndexHandle(info, std::move(store)));
  return info;
}

void IndexRegistry::drop(const std::string& name) {
  std::shared_ptr<IndexHandle> handle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = indexes_.find(name);
    if (it == indexes_.end()) {
      if (!broken_.count(name)) throw not_found("no index named " + in_quotes(name));
    } else {
      handle = it->second;
      indexes_.erase(it);
    }
    dropping_.insert(name);
  }
  const std::string dir = root_ + "/" + name, doomed = dir + kDroppingSuffix;
  // The change or checkpoint in flight finishes first; later ones are
  // refused, so nothing writes into the folder once it is renamed.
  if (handle) handle->store_->close();
  try {
    remove_tree(doomed);
    rename_path(dir, doomed);
    fsync_dir(root_);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    dropping_.erase(name);
    if (handle) {
      handle->store_->reopen();
      indexes_[name] = handle;
    }
    throw;
  }
  std::error_code ec;
  remove_tree(doomed, ec);  // the drop is done; a leftover goes at the next start
  if (ec) log_warning("index %s dropped, but %s remains: %s", in_quotes(name).c_str(), doomed.c_str(), ec.message().c_str());
  std::lock_guard<std::mutex> lock(mu_);
  dropping_.erase(name);
  broken_.erase(name);
}

std::shared_ptr<IndexHandle> IndexRegistry::find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = indexes_.find(name);
  if (it == indexes_.end()) {
    auto broken = broken_.find(name);
    if (broken != broken_.end()) {
      throw Error(ErrorCode::kFailedPrecondition,
                  "index " + in_quotes(name) + " failed to load at start: " + broken->second);
    }
    throw not_found("no index named " + in_quotes(name));
  }
  return it->second;
}

std::shared_ptr<const IndexHandle> IndexRegistry::get(const std::string& name) const { return find(name); }

std::vector<IndexInfo> IndexRegistry::list() const {
  std::vector<std::shared_ptr<IndexHandle>> handles;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, handle] : indexes_) handles.push_back(handle);
  }
  std::vector<IndexInfo> out;
  for (const auto& h : handles) out.push_back(h->info());
  return out;
}

std::map<std::string, std::string> IndexRegistry::broken() const {
  std::lock_guard<std::mutex> lock(mu_);
  return broken_;
}

AddItemsResult IndexRegistry::add(const std::string& name, const std::vector<std::string>& ids, const float* vectors,
                                  size_t n, const std::vector<std::string>& metadata, bool upsert) {
  auto handle = find(name);
  const AddResult r = handle->store_->add(ids, vectors, n, metadata, upsert);
  return {r.added, r.replaced, handle->index()->size()};
}

AddItemsResult IndexRegistry::add(const std::string& name, const std::vector<std::string>& ids,
                                  const std::vector<std::vector<float>>& vectors,
                                  const std::vector<std::string>& metadata, bool upsert) {
  auto handle = find(name);
  const std::vector<float> flat = VectorIndex::flatten(ids, vectors, handle->index()->dim());
  const AddResult r = handle->store_->add(ids, flat.data(), vectors.size(), metadata, upsert);
  return {r.added, r.replaced, handle->index()->size()};
}

RemoveItemsResult IndexRegistry::remove(const std::string& name, const std::vector<std::string>& ids) {
  auto handle = find(name);
  const size_t deleted = handle->store_->remove(ids);
  return {deleted, handle->index()->size()};
}

}  // namespace refinery
