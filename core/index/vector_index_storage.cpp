#include "core/index/vector_index.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>

#include "core/base/error.h"
#include "core/base/json_integer.h"
#include "core/base/remove_tree.h"
#include "core/index/durable_file.h"
#include "core/index/error_text.h"
#include "core/index/hnsw_graph.h"
#include "core/index/huge_pages.h"
#include "core/index/index_options_json.h"
#include "core/index/ivf_search.h"

// Persistence protocol of save(dir). Files live in `dir`:
//   vectors.f32    slots x dim float32 (native byte order), L2-normalised
//   items.bin      per slot: u8 live, u32 id length, id, u32 metadata length, metadata
//   faiss.index    the HNSW graph (absent for FLAT and IVF; IVF indexes saved
//                  before centroids.f32 existed kept their lists here)
//   centroids.f32  IVF: the cell centres, nlist x dim float32
//   cells.i32      IVF: each slot's cell (-1: not listed), int32; the lists
//                  are rebuilt from vectors.f32 at load, not stored twice
//   manifest.json  dim, options, counts, IVF drift statistics, the first
//                  write-ahead log segment not included (log_segment), and the
//                  size + checksum of every file above
// Steps:
//   1. recover(dir) (below) so no earlier crash is pending;
//   2. write everything into the sibling `dir`.tmp, fsync each file; the
//      manifest goes last, as manifest.json.part renamed to manifest.json, so
//      a manifest's presence means the directory is complete; fsync `dir`.tmp;
//   3. rename `dir` -> `dir`.old (if `dir` exists); rename `dir`.tmp -> `dir`;
//      fsync the parent; delete `dir`.old.
// recover(dir) after a crash at any point:
//   - `dir` exists: it is the latest complete state (step 3 only renames a
//     complete tmp into place); delete `dir`.tmp and `dir`.old.
//   - else `dir`.tmp has manifest.json: the crash hit between the renames (or
//     before the first rename of a first save); roll forward: rename it in.
//   - else `dir`.old exists: roll back to it.
//   Leftover tmp/old directories are then deleted.
// A checksum mismatch or short file found by load() is reported as
// invalid_argument naming the file, never served.

namespace refinery {
namespace {

namespace fs = std::filesystem;
using index_internal::check_checksum;
using index_internal::check_file;
using index_internal::Checksum;
using index_internal::checksum_file;
using index_internal::DurableWriter;
using index_internal::exists;
using index_internal::FastFlatIP;
using index_internal::fsync_dir;
using index_internal::idx_t;
using index_internal::in_quotes;
using index_internal::options_from_json;
using index_internal::options_to_json;
using index_internal::parent_of;
using index_internal::read_exact;
using index_internal::rename_path;
using index_internal::index_write_error;

constexpr const char* kManifest = "manifest.json";
constexpr const char* kVectorsFile = "vectors.f32";
constexpr const char* kItemsFile = "items.bin";
constexpr const char* kFaissFile = "faiss.index";
constexpr const char* kCentroidsFile = "centroids.f32";
constexpr const char* kCellsFile = "cells.i32";
constexpr const char* kFormat = "refinery-vector-index";
constexpr int kFormatVersion = 1;

// Lets faiss::write_index stream into a DurableWriter.
struct FaissFileWriter : faiss::IOWriter {
  explicit FaissFileWriter(DurableWriter* out) : out(out) {}
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    out->write(ptr, size * nitems);
    return nitems;
  }
  DurableWriter* out;
};

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

void VectorIndex::recover(const std::string& dir) {
  const std::string tmp = dir + ".tmp", old = dir + ".old";
  if (exists(dir)) {
    remove_tree(tmp);
    remove_tree(old);
    return;
  }
  if (exists(tmp + "/" + kManifest)) {
    rename_path(tmp, dir);
    fsync_dir(parent_of(dir));
    remove_tree(old);
  } else if (exists(old)) {
    rename_path(old, dir);
    fsync_dir(parent_of(dir));
    remove_tree(tmp);
  } else {
    remove_tree(tmp);
  }
}

void VectorIndex::save(const std::string& dir, uint64_t log_segment) const {
  recover(dir);
  const std::string tmp = dir + ".tmp", old = dir + ".old", parent = parent_of(dir);
  {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) throw internal_error("cannot create directory " + parent + ": " + ec.message());
  }
  try {
    if (::mkdir(tmp.c_str(), 0755) != 0) throw index_write_error("cannot create directory", tmp, errno);
    nlohmann::json files = nlohmann::json::object();
    auto record = [&](const char* name, const DurableWriter& w) {
      files[name] = {{"bytes", w.bytes()}, {"checksum", Checksum::hex(w.checksum())}};
    };
    nlohmann::json manifest;
    {
      auto lock = read_lock();  // a consistent snapshot; searches go on
      {
        DurableWriter w(tmp + "/" + kVectorsFile);
        w.write(vectors_.data(), vectors_.size() * sizeof(float));
        w.finish();
        record(kVectorsFile, w);
      }
      {
        DurableWriter w(tmp + "/" + kItemsFile);
        std::string rec;
        for (size_t s = 0; s < slots(); ++s) {
          rec.clear();
          rec.push_back(static_cast<char>(live_[s]));
          put_u32(rec, static_cast<uint32_t>(ids_[s].size()));
          rec += ids_[s];
          put_u32(rec, static_cast<uint32_t>(metadata_[s].size()));
          rec += metadata_[s];
          w.write(rec.data(), rec.size());
        }
        w.finish();
        record(kItemsFile, w);
      }
      std::string ann = "none";
      size_t cells_nlist = 0;
      if (ivf_) {
        // IVF: the cell centres and each slot's cell; load() rebuilds the
        // lists from them.
        ann = "ivf-cells";
        cells_nlist = ivf_->nlist();
        {
          DurableWriter w(tmp + "/" + kCentroidsFile);
          w.write(ivf_->centroids(), cells_nlist * dim_ * sizeof(float));
          w.finish();
          record(kCentroidsFile, w);
        }
        std::vector<int32_t> cells = ivf_->cell_of();
        cells.resize(slots(), -1);
        DurableWriter w(tmp + "/" + kCellsFile);
        w.write(cells.data(), cells.size() * sizeof(int32_t));
        w.finish();
        record(kCellsFile, w);
      } else if (ann_) {
        ann = "hnsw";
        DurableWriter w(tmp + "/" + kFaissFile);
        FaissFileWriter writer(&w);
        try {
          faiss::write_index(ann_.get(), &writer);
        } catch (const faiss::FaissException& e) {
          throw internal_error("cannot write " + tmp + "/" + kFaissFile + ": " + e.what());
        }
        w.finish();
        record(kFaissFile, w);
      }
      manifest = {{"format", kFormat},
                  {"version", kFormatVersion},
                  {"dim", dim_},
                  {"options", options_to_json(options_)},
                  {"slots", slots()},
                  {"live", slot_of_.size()},
                  {"ann", ann},
                  {"ivf_trained_at", ivf_trained_at_},
                  {"ivf_cells_nlist", cells_nlist},
                  {"ivf_train_distance", ivf_train_distance_},
                  {"ivf_drift_sum", drift_sum_},
                  {"ivf_drift_count", drift_count_},
                  {"log_segment", log_segment},
                  {"files", files}};
    }
    {
      const std::string part = tmp + "/" + kManifest + ".part";
      DurableWriter w(part);
      const std::string text = manifest.dump(2) + "\n";
      w.write(text.data(), text.size());
      w.finish();
      rename_path(part, tmp + "/" + kManifest);
    }
    fsync_dir(tmp);
  } catch (...) {
    std::error_code ec;
    remove_tree(tmp, ec);  // best effort: the last good `dir` is untouched
    throw;
  }

  const bool had_old = exists(dir);
  if (had_old) rename_path(dir, old);
  try {
    rename_path(tmp, dir);
  } catch (...) {
    if (had_old) ::rename(old.c_str(), dir.c_str());  // best effort; recover() also handles it
    throw;
  }
  fsync_dir(parent);
  if (had_old) remove_tree(old);
}

std::unique_ptr<VectorIndex> VectorIndex::load(const std::string& dir, uint64_t* log_segment, uint64_t room_bytes) {
  recover(dir);
  if (!exists(dir)) throw not_found("no saved vector index at " + dir);
  const std::string manifest_path = dir + "/" + kManifest;
  nlohmann::json m;
  {
    std::string text;
    struct stat st {};
    if (::stat(manifest_path.c_str(), &st) != 0) {
      throw invalid_argument(manifest_path + ": cannot read: " + std::strerror(errno));
    }
    text.resize(static_cast<size_t>(st.st_size));
    read_exact(manifest_path, text.data(), text.size());
    try {
      m = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw invalid_argument(manifest_path + ": not valid JSON: " + without_quoted_input(e.what()));
    }
  }

  std::unique_ptr<VectorIndex> index;
  size_t slots = 0, live = 0;
  std::string ann;
  uint64_t vectors_bytes = 0, items_bytes = 0, faiss_bytes = 0, centroids_bytes = 0, cells_bytes = 0;
  std::string vectors_sum, items_sum, faiss_sum, centroids_sum, cells_sum;
  size_t cells_nlist = 0;
  try {
    if (m.at("format").get<std::string>() != kFormat || json_integer<int>(m.at("version"), "version") != kFormatVersion) {
      throw invalid_argument(manifest_path + ": not a version " + std::to_string(kFormatVersion) +
                             " refinery vector index manifest");
    }
    index = std::make_unique<VectorIndex>(json_integer<int>(m.at("dim"), "dim"), options_from_json(m.at("options")));
    slots = json_integer<size_t>(m.at("slots"), "slots");
    live = json_integer<size_t>(m.at("live"), "live");
    ann = m.at("ann").get<std::string>();
    index->ivf_trained_at_ = json_integer<size_t>(m.at("ivf_trained_at"), "ivf_trained_at");
    // Added with the write-ahead log; older snapshots lack them.
    index->ivf_train_distance_ = m.value("ivf_train_distance", 0.0);
    index->drift_sum_ = m.value("ivf_drift_sum", 0.0);
    index->drift_count_ = m.contains("ivf_drift_count") ? json_integer<size_t>(m.at("ivf_drift_count"), "ivf_drift_count") : 0;
    const uint64_t segment = m.contains("log_segment") ? json_integer<uint64_t>(m.at("log_segment"), "log_segment") : 0;
    if (log_segment) *log_segment = segment;
    const auto& files = m.at("files");
    vectors_bytes = json_integer<uint64_t>(files.at(kVectorsFile).at("bytes"), std::string(kVectorsFile) + ".bytes");
    vectors_sum = files.at(kVectorsFile).at("checksum").get<std::string>();
    items_bytes = json_integer<uint64_t>(files.at(kItemsFile).at("bytes"), std::string(kItemsFile) + ".bytes");
    items_sum = files.at(kItemsFile).at("checksum").get<std::string>();
    if (ann == "ivf-cells") {
      cells_nlist = json_integer<size_t>(m.at("ivf_cells_nlist"), "ivf_cells_nlist");
      centroids_bytes = json_integer<uint64_t>(files.at(kCentroidsFile).at("bytes"), std::string(kCentroidsFile) + ".bytes");
      centroids_sum = files.at(kCentroidsFile).at("checksum").get<std::string>();
      cells_bytes = json_integer<uint64_t>(files.at(kCellsFile).at("bytes"), std::string(kCellsFile) + ".bytes");
      cells_sum = files.at(kCellsFile).at("checksum").get<std::string>();
    } else if (ann != "none") {
      faiss_bytes = json_integer<uint64_t>(files.at(kFaissFile).at("bytes"), std::string(kFaissFile) + ".bytes");
      faiss_sum = files.at(kFaissFile).at("checksum").get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(manifest_path + ": missing or malformed field: " + without_quoted_input(e.what()));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kInvalidArgument || std::string(e.what()).rfind(manifest_path, 0) == 0) throw;
    throw invalid_argument(manifest_path + ": " + e.what());
  }
  const int dim = index->dim_;
  const size_t reserve_items = static_cast<size_t>(room_bytes / (static_cast<uint64_t>(dim) * sizeof(float)));
  if (vectors_bytes != static_cast<uint64_t>(slots) * dim * sizeof(float)) {
    throw invalid_argument(manifest_path + ": " + kVectorsFile + " size does not match slots x dim");
  }
  if (!(ann == "none" || (ann == "hnsw" && index->options_.kind == IndexKind::kHnsw) ||
        ((ann == "ivf" || ann == "ivf-cells") && index->options_.kind == IndexKind::kIvf))) {
    throw invalid_argument(manifest_path + ": ann " + in_quotes(ann) + " does not fit the index kind");
  }

  // Vectors: sizes first, so a corrupt manifest cannot make us allocate wildly.
  const std::string vectors_path = dir + "/" + kVectorsFile;
  check_file(vectors_path, vectors_bytes);
  index_internal::reserve_with_huge_pages(index->vectors_, (static_cast<size_t>(slots) + reserve_items) * dim);
  index->vectors_.resize(static_cast<size_t>(slots) * dim);
  check_checksum(vectors_path, read_exact(vectors_path, index->vectors_.data(), vectors_bytes), vectors_sum);

  // Items.
  const std::string items_path = dir + "/" + kItemsFile;
  check_file(items_path, items_bytes);
  std::string items(items_bytes, '\0');
  check_checksum(items_path, read_exact(items_path, items.data(), items_bytes), items_sum);
  {
    size_t pos = 0;
    auto take_u32 = [&](size_t slot) {
      if (pos + 4 > items.size()) throw invalid_argument(items_path + ": record " + std::to_string(slot) + " is cut short");
      uint32_t v;
      std::memcpy(&v, items.data() + pos, 4);
      pos += 4;
      return v;
    };
    auto take_str = [&](size_t slot, uint32_t len) {
      if (pos + len > items.size()) throw invalid_argument(items_path + ": record " + std::to_string(slot) + " is cut short");
      std::string s = items.substr(pos, len);
      pos += len;
      return s;
    };
    index->ids_.reserve(slots + reserve_items);
    index->metadata_.reserve(slots + reserve_items);
    index->live_.reserve(slots + reserve_items);
    index->slot_of_.reserve(live + reserve_items);
    for (size_t s = 0; s < slots; ++s) {
      if (pos + 1 > items.size()) throw invalid_argument(items_path + ": record " + std::to_string(s) + " is cut short");
      const uint8_t is_live = static_cast<uint8_t>(items[pos++]);
      std::string id = take_str(s, take_u32(s));
      std::string meta = take_str(s, take_u32(s));
      if (is_live > 1 || id.empty()) throw invalid_argument(items_path + ": record " + std::to_string(s) + " is corrupt");
      if (is_live && !index->slot_of_.emplace(id, s).second) {
        throw invalid_argument(items_path + ": id " + in_quotes(id) + " appears twice");
      }
      index->ids_.push_back(std::move(id));
      index->metadata_.push_back(std::move(meta));
      index->live_.push_back(is_live);
    }
    if (pos != items.size()) throw invalid_argument(items_path + ": trailing bytes after " + std::to_string(slots) + " records");
    if (index->slot_of_.size() != live) {
      throw invalid_argument(items_path + ": " + std::to_string(index->slot_of_.size()) + " live items, manifest says " +
                             std::to_string(live));
    }
    index->dead_ = slots - live;
  }

  // The FAISS structure, as saved: no retraining, no graph rebuild.
  if (ann == "ivf-cells") {
    if (cells_nlist < 1 || cells_nlist > static_cast<size_t>(index_internal::kMaxIvfNlist) ||
        centroids_bytes != static_cast<uint64_t>(cells_nlist) * dim * sizeof(float) ||
        cells_bytes != static_cast<uint64_t>(slots) * sizeof(int32_t)) {
      throw invalid_argument(manifest_path + ": " + kCentroidsFile + " or " + kCellsFile +
                             " size does not match ivf_cells_nlist, slots and dim");
    }
    const std::string centroids_path = dir + "/" + kCentroidsFile, cells_path = dir + "/" + kCellsFile;
    check_file(centroids_path, centroids_bytes);
    std::vector<float> centroids(cells_nlist * dim);
    check_checksum(centroids_path, read_exact(centroids_path, centroids.data(), centroids_bytes), centroids_sum);
    check_file(cells_path, cells_bytes);
    std::vector<int32_t> cells(slots);
    check_checksum(cells_path, read_exact(cells_path, cells.data(), cells_bytes), cells_sum);
    for (size_t s = 0; s < slots; ++s) {
      if (cells[s] < -1 || cells[s] >= static_cast<int32_t>(cells_nlist)) {
        throw invalid_argument(cells_path + ": slot " + std::to_string(s) + " names cell " + std::to_string(cells[s]) +
                               " of " + std::to_string(cells_nlist));
      }
    }
    index->ivf_ = std::make_unique<index_internal::IvfCells>(dim, centroids.data(), cells_nlist);
    index->ivf_->rebuild(std::move(cells), index->vectors_.data());
  } else if (ann == "none") {
    index->ann_.reset();
    if (index->options_.kind == IndexKind::kHnsw) index->rebuild_ann();  // only if saved without its graph
  } else {
    const std::string faiss_path = dir + "/" + kFaissFile;
    check_file(faiss_path, faiss_bytes);
    check_checksum(faiss_path, checksum_file(faiss_path, faiss_bytes), faiss_sum);
    std::unique_ptr<faiss::Index> loaded;
    try {
      faiss::FileIOReader reader(faiss_path.c_str());
      loaded.reset(faiss::read_index(&reader));
    } catch (const faiss::FaissException& e) {
      throw invalid_argument(faiss_path + ": not a readable FAISS index: " + e.what());
    }
    auto loaded_ivf = dynamic_cast<faiss::IndexIVFFlat*>(loaded.get());  // snapshots before centroids.f32
    const bool type_ok = ann == "hnsw" ? dynamic_cast<faiss::IndexHNSWFlat*>(loaded.get()) != nullptr
                                       : loaded_ivf && dynamic_cast<faiss::IndexFlat*>(loaded_ivf->quantizer) &&
                                             loaded_ivf->quantizer->metric_type == faiss::METRIC_INNER_PRODUCT;
    // HNSW labels are insertion order, so the graph holds every slot; IVF
    // lists hold at most every slot.
    const bool count_ok = ann == "hnsw" ? loaded->ntotal == static_cast<idx_t>(slots)
                                        : loaded->ntotal <= static_cast<idx_t>(slots);
    if (!type_ok || !count_ok || loaded->d != dim || loaded->metric_type != faiss::METRIC_INNER_PRODUCT) {
      throw invalid_argument(faiss_path + ": does not match the manifest (type, dim, metric or item count)");
    }
    if (auto hnsw = dynamic_cast<faiss::IndexHNSW*>(loaded.get())) {
      // Back to the fast storage class (saved as a plain IndexFlatIP).
      auto flat = dynamic_cast<faiss::IndexFlat*>(hnsw->storage);
      if (!flat) throw invalid_argument(faiss_path + ": the HNSW graph has no flat storage");
      auto fast = std::make_unique<FastFlatIP>(dim);
      fast->codes.swap(flat->codes);
      fast->ntotal = flat->ntotal;
      if (hnsw->own_fields) delete hnsw->storage;
      hnsw->storage = fast.release();
      hnsw->own_fields = true;
      hnsw->hnsw.efSearch = 1;  // see search()
    }
    if (loaded_ivf) {
      // Keep the cells and the lists' order; the vectors are in vectors.f32.
      const auto* centres = static_cast<const faiss::IndexFlat*>(loaded_ivf->quantizer);
      std::vector<int32_t> cells(slots, -1);
      for (size_t list = 0; list < loaded_ivf->nlist; ++list) {
        const size_t count = loaded_ivf->invlists->list_size(list);
        faiss::InvertedLists::ScopedIds listed(loaded_ivf->invlists, list);
        for (size_t j = 0; j < count; ++j) {
          if (listed[j] < 0 || static_cast<size_t>(listed[j]) >= slots) {
            throw invalid_argument(faiss_path + ": an IVF list names slot " + std::to_string(listed[j]) + " of " +
                                   std::to_string(slots));
          }
          cells[static_cast<size_t>(listed[j])] = static_cast<int32_t>(list);
        }
      }
      index->ivf_ = std::make_unique<index_internal::IvfCells>(dim, centres->get_xb(), loaded_ivf->nlist);
      index->ivf_->rebuild(std::move(cells), index->vectors_.data());
    } else {
      index->ann_ = std::move(loaded);
    }
  }
  return index;
}

}  // namespace refinery
