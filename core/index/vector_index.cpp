#include "core/index/vector_index.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#include "core/base/error.h"

// Persistence protocol of save(dir). Files live in `dir`:
//   vectors.f32    slots x dim float32 (native byte order), L2-normalised
//   items.bin      per slot: u8 live, u32 id length, id, u32 metadata length, metadata
//   faiss.index    the trained IVF or the HNSW graph (absent for FLAT / untrained IVF)
//   manifest.json  dim, options, counts, and the size + checksum of every file above
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
using idx_t = faiss::Index::idx_t;

constexpr const char* kManifest = "manifest.json";
constexpr const char* kVectorsFile = "vectors.f32";
constexpr const char* kItemsFile = "items.bin";
constexpr const char* kFaissFile = "faiss.index";
constexpr const char* kFormat = "refinery-vector-index";
constexpr int kFormatVersion = 1;
constexpr int kIvfTrainIterations = 10;  // k-means iterations; FAISS's 25 buys little on embeddings
constexpr int kMaxIvfNlist = 65536;
constexpr size_t kBlasBatch = 20;  // from this many queries on, exact search goes through FAISS's BLAS path

// ---------------------------------------------------------------- checksums

// A fast 64-bit checksum (xxHash64-style rounds over 8-byte words) that
// catches truncation and bit rot; not cryptographic. Independent of how the
// bytes are split across update() calls.
class Checksum {
 public:
  void update(const void* data, size_t n) {
    auto p = static_cast<const uint8_t*>(data);
    total_ += n;
    while (n > 0 && pending_len_ > 0) {
      pending_[pending_len_++] = *p++;
      --n;
      if (pending_len_ == 8) {
        mix(load(pending_));
        pending_len_ = 0;
      }
    }
    for (; n >= 8; p += 8, n -= 8) mix(load(p));
    while (n > 0) {
      pending_[pending_len_++] = *p++;
      --n;
    }
  }

  uint64_t digest() const {
    uint64_t h = h_;
    for (size_t i = 0; i < pending_len_; ++i) h = rotl(h ^ (pending_[i] * kP5), 11) * kP1;
    h ^= total_;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
  }

  static std::string hex(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
  }

 private:
  static constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL, kP2 = 0xC2B2AE3D27D4EB4FULL,
                            kP3 = 0x165667B19E3779F9ULL, kP5 = 0x27D4EB2F165667C5ULL;
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  static uint64_t load(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  void mix(uint64_t w) { h_ = rotl(h_ + w * kP2, 31) * kP1; }

  uint64_t h_ = kP5;
  uint64_t total_ = 0;
  uint8_t pending_[8] = {};
  size_t pending_len_ = 0;
};

// ---------------------------------------------------------------- file I/O

Error write_error(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " " + path + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return resource_exhausted(msg);
  return internal_error(msg);
}

// Writes one file durably: buffered, checksummed, fsync'd by finish().
class DurableWriter {
 public:
  explicit DurableWriter(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw write_error("cannot create", path_, errno);
    buffer_.reserve(kBufferSize);
  }
  ~DurableWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  DurableWriter(const DurableWriter&) = delete;
  DurableWriter& operator=(const DurableWriter&) = delete;

  void write(const void* data, size_t n) {
    checksum_.update(data, n);
    bytes_ += n;
    if (buffer_.size() + n <= kBufferSize) {
      auto p = static_cast<const char*>(data);
      buffer_.insert(buffer_.end(), p, p + n);
      return;
    }
    flush();
    if (n >= kBufferSize) {
      write_all(data, n);
    } else {
      auto p = static_cast<const char*>(data);
      buffer_.insert(buffer_.end(), p, p + n);
    }
  }

  void finish() {
    flush();
    if (::fsync(fd_) != 0) throw write_error("cannot fsync", path_, errno);
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw write_error("cannot close", path_, errno);
  }

  uint64_t bytes() const { return bytes_; }
  uint64_t checksum() const { return checksum_.digest(); }

 private:
  static constexpr size_t kBufferSize = size_t{1} << 20;

  void flush() {
    if (!buffer_.empty()) write_all(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  void write_all(const void* data, size_t n) {
    auto p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw write_error("cannot write", path_, errno);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<char> buffer_;
  Checksum checksum_;
  uint64_t bytes_ = 0;
};

// Lets faiss::write_index stream into a DurableWriter.
struct FaissFileWriter : faiss::IOWriter {
  explicit FaissFileWriter(DurableWriter* out) : out(out) {}
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    out->write(ptr, size * nitems);
    return nitems;
  }
  DurableWriter* out;
};

void fsync_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw write_error("cannot open directory", path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) throw write_error("cannot fsync directory", path, err);
}

std::string parent_of(const std::string& dir) {
  fs::path p = fs::path(dir).parent_path();
  return p.empty() ? "." : p.string();
}

void rename_path(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) throw write_error("cannot rename " + from + " to", to, errno);
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) throw internal_error("cannot remove " + path + ": " + ec.message());
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

// The size of `path` and a check that it is what the manifest says.
void check_file(const std::string& path, uint64_t expected_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) != expected_bytes) {
    throw invalid_argument(path + ": truncated or corrupt: " + std::to_string(st.st_size) + " bytes, expected " +
                           std::to_string(expected_bytes));
  }
}

// Reads exactly `n` bytes of `path` into `dst`, returning their checksum.
uint64_t read_exact(const std::string& path, void* dst, uint64_t n) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
  Checksum sum;
  auto p = static_cast<char*>(dst);
  uint64_t left = n;
  while (left > 0) {
    ssize_t r = ::read(fd, p, static_cast<size_t>(std::min<uint64_t>(left, size_t{1} << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = errno;
      ::close(fd);
      throw invalid_argument(path + ": truncated or unreadable" + (r < 0 ? std::string(": ") + std::strerror(err) : ""));
    }
    sum.update(p, static_cast<size_t>(r));
    p += r;
    left -= static_cast<uint64_t>(r);
  }
  ::close(fd);
  return sum.digest();
}

// Checksums `path` without keeping it in memory.
uint64_t checksum_file(const std::string& path, uint64_t n) {
  std::vector<char> buf(size_t{1} << 20);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
  Checksum sum;
  uint64_t left = n;
  while (left > 0) {
    ssize_t r = ::read(fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      throw invalid_argument(path + ": truncated or unreadable");
    }
    sum.update(buf.data(), static_cast<size_t>(r));
    left -= static_cast<uint64_t>(r);
  }
  ::close(fd);
  return sum.digest();
}

void check_checksum(const std::string& path, uint64_t actual, const std::string& expected_hex) {
  if (Checksum::hex(actual) != expected_hex) {
    throw invalid_argument(path + ": corrupt (checksum " + Checksum::hex(actual) + ", manifest says " + expected_hex +
                           ")");
  }
}

// ---------------------------------------------------------------- distances

// Debian's libfaiss 1.7.3 is built for baseline x86-64 and its
// fvec_inner_product is a scalar loop (one dependent add per element):
// building HNSW over 100k x 512 had not finished after 15 minutes on 2 cores
// (2.4 minutes with this kernel). This one keeps 16 partial sums in vector
// registers and has an AVX2 clone, picked at load time by CPU feature (an
// "arch=" clone goes by CPU model and misses AMD). It computes every distance
// we control: exact scans, IVF lists and the HNSW graph (build and search).
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define REFINERY_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define REFINERY_SIMD_CLONES
#endif

REFINERY_SIMD_CLONES
float inner_product(const float* a, const float* b, size_t d) {
  typedef float v8 __attribute__((vector_size(32)));
  v8 acc0 = {}, acc1 = {};
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    v8 a0, a1, b0, b1;
    std::memcpy(&a0, a + i, sizeof a0);
    std::memcpy(&a1, a + i + 8, sizeof a1);
    std::memcpy(&b0, b + i, sizeof b0);
    std::memcpy(&b1, b + i + 8, sizeof b1);
    acc0 += a0 * b0;
    acc1 += a1 * b1;
  }
  const v8 acc = acc0 + acc1;
  float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < d; ++i) sum += a[i] * b[i];
  return sum;
}

// The best k of n rows of `base` for query q (skipping slots whose live[]
// is 0 when live is given), best first, padded with label -1: the layout
// FAISS's searches return.
void exact_top_k(const float* q, const float* base, size_t n, size_t d, size_t k, const uint8_t* live, float* D,
                 idx_t* I) {
  faiss::minheap_heapify(k, D, I);
  for (size_t s = 0; s < n; ++s) {
    if (live && !live[s]) continue;
    const float score = inner_product(q, base + s * d, d);
    if (score > D[0]) faiss::minheap_replace_top(k, D, I, score, static_cast<idx_t>(s));
  }
  faiss::minheap_reorder(k, D, I);
}

// IVF search over FAISS's trained cells and lists, with the kernel above:
// the nprobe best cells, then every live item listed in them.
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

// HNSW's distances over its flat storage, computed with the kernel above.
struct FastInnerProducts : faiss::FlatCodesDistanceComputer {
  explicit FastInnerProducts(const faiss::IndexFlat& storage)
      : FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
        base(storage.get_xb()),
        d(static_cast<size_t>(storage.d)) {}
  void set_query(const float* x) override { q = x; }
  float distance_to_code(const uint8_t* code) override {
    return inner_product(q, reinterpret_cast<const float*>(code), d);
  }
  float symmetric_dis(idx_t i, idx_t j) override { return inner_product(base + i * d, base + j * d, d); }

  const float* base;
  size_t d;
  const float* q = nullptr;
};

// The HNSW graph's storage: a plain IndexFlatIP (and saved as one) whose
// distance computer is FastInnerProducts.
struct FastFlatIP : faiss::IndexFlatIP {
  explicit FastFlatIP(idx_t d) : faiss::IndexFlatIP(d) {}
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override {
    return new FastInnerProducts(*this);
  }
};

// ---------------------------------------------------------------- helpers

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

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

std::string item_name(size_t i, const std::string& id) {
  return "item " + std::to_string(i) + (id.empty() ? std::string() : " (id " + in_quotes(id) + ")");
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

size_t auto_nlist(size_t n) {
  size_t by_sqrt = static_cast<size_t>(std::lround(4.0 * std::sqrt(static_cast<double>(n))));
  size_t by_points = n / VectorIndex::kIvfMinPointsPerCell;
  return std::max<size_t>(1, std::min({by_sqrt, by_points, static_cast<size_t>(kMaxIvfNlist)}));
}

nlohmann::json options_to_json(const IndexOptions& o) {
  return {{"kind", index_kind_name(o.kind)},
          {"ivf_nlist", o.ivf_nlist},
          {"ivf_nprobe", o.ivf_nprobe},
          {"hnsw_m", o.hnsw_m},
          {"hnsw_ef_construction", o.hnsw_ef_construction},
          {"hnsw_ef_search", o.hnsw_ef_search}};
}

IndexOptions options_from_json(const nlohmann::json& j) {
  IndexOptions o;
  o.kind = parse_index_kind(j.at("kind").get<std::string>());
  o.ivf_nlist = j.at("ivf_nlist").get<int>();
  o.ivf_nprobe = j.at("ivf_nprobe").get<int>();
  o.hnsw_m = j.at("hnsw_m").get<int>();
  o.hnsw_ef_construction = j.at("hnsw_ef_construction").get<int>();
  o.hnsw_ef_search = j.at("hnsw_ef_search").get<int>();
  return o.resolved();
}

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

// ---------------------------------------------------------------- options

const char* index_kind_name(IndexKind kind) {
  switch (kind) {
    case IndexKind::kFlat: return "flat";
    case IndexKind::kIvf: return "ivf";
    case IndexKind::kHnsw: return "hnsw";
  }
  return "unknown";
}

IndexKind parse_index_kind(const std::string& name) {
  if (name == "flat") return IndexKind::kFlat;
  if (name == "ivf") return IndexKind::kIvf;
  if (name == "hnsw") return IndexKind::kHnsw;
  throw invalid_argument("unknown index kind " + in_quotes(name) + " (expected flat, ivf or hnsw)");
}

IndexOptions IndexOptions::resolved() const {
  IndexOptions o = *this;
  auto check = [](int value, int lo, int hi, const char* field) {
    if (value < lo || value > hi) {
      throw invalid_argument(std::string("index option ") + field + " = " + std::to_string(value) +
                             " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
  };
  check(o.ivf_nlist, 0, kMaxIvfNlist, "ivf_nlist");
  check(o.ivf_nprobe, 0, kMaxIvfNlist, "ivf_nprobe");
  check(o.hnsw_m, 0, 256, "hnsw_m");
  check(o.hnsw_ef_construction, 0, 4096, "hnsw_ef_construction");
  check(o.hnsw_ef_search, 0, VectorIndex::kMaxK * 16, "hnsw_ef_search");
  const IndexOptions defaults;
  if (o.hnsw_m == 0) o.hnsw_m = defaults.hnsw_m;
  if (o.hnsw_m < 2) throw invalid_argument("index option hnsw_m = 1 is too small (at least 2)");
  if (o.hnsw_ef_construction == 0) o.hnsw_ef_construction = defaults.hnsw_ef_construction;
  if (o.hnsw_ef_search == 0) o.hnsw_ef_search = defaults.hnsw_ef_search;
  return o;
}

// ---------------------------------------------------------------- VectorIndex

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
  return options_.kind != IndexKind::kIvf || ann_ != nullptr;
}

int VectorIndex::ivf_nlist() const {
  auto lock = read_lock();
  auto ivf = dynamic_cast<const faiss::IndexIVF*>(ann_.get());
  return ivf ? static_cast<int>(ivf->nlist) : 0;
}

bool VectorIndex::contains(const std::string& id) const {
  auto lock = read_lock();
  return slot_of_.count(id) != 0;
}

bool VectorIndex::ivf_should_train() const {
  if (options_.kind != IndexKind::kIvf) return false;
  const size_t live = slot_of_.size();
  if (training_) return false;
  if (!ann_) {
    return live >= std::max(kIvfTrainMinItems, kIvfMinPointsPerCell * static_cast<size_t>(options_.ivf_nlist));
  }
  // A fixed nlist never needs retraining; an automatic one follows n.
  return options_.ivf_nlist == 0 && live >= kIvfRetrainGrowth * ivf_trained_at_ &&
         auto_nlist(live) > static_cast<const faiss::IndexIVF*>(ann_.get())->nlist;
}

size_t VectorIndex::ivf_default_nprobe() const {
  auto ivf = static_cast<const faiss::IndexIVF*>(ann_.get());
  if (options_.ivf_nprobe > 0) return std::min<size_t>(options_.ivf_nprobe, ivf->nlist);
  return std::min<size_t>(ivf->nlist, std::max<size_t>(8, ivf->nlist / 16));
}

std::unique_ptr<faiss::Index> VectorIndex::new_hnsw() const {
  auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(dim_, options_.hnsw_m, faiss::METRIC_INNER_PRODUCT);
  auto storage = std::make_unique<FastFlatIP>(dim_);
  delete hnsw->storage;  // IndexHNSWFlat owns it
  hnsw->storage = storage.release();
  hnsw->hnsw.efConstruction = options_.hnsw_ef_construction;
  hnsw->hnsw.efSearch = 1;  // the real ef comes with each search; see search()
  return hnsw;
}

void VectorIndex::add_slots(faiss::Index& target, size_t first_slot, size_t count) const {
  if (count == 0) return;
  const float* x = vectors_.data() + first_slot * dim_;
  if (options_.kind == IndexKind::kHnsw) {
    target.add(static_cast<idx_t>(count), x);  // HNSW labels are insertion order = slot numbers
  } else {
    std::vector<idx_t> labels(count);
    for (size_t i = 0; i < count; ++i) labels[i] = static_cast<idx_t>(first_slot + i);
    target.add_with_ids(static_cast<idx_t>(count), x, labels.data());
  }
}

void VectorIndex::rebuild_ann() {
  try {
    if (options_.kind == IndexKind::kHnsw) {
      ann_.reset();
      auto hnsw = new_hnsw();
      add_slots(*hnsw, 0, slots());
      ann_ = std::move(hnsw);
    } else if (auto ivf = dynamic_cast<faiss::IndexIVF*>(ann_.get())) {
      ivf->reset();  // the cells stay valid; only the lists change
      add_slots(*ivf, 0, slots());
    }
  } catch (const std::exception& e) {
    ann_.reset();  // searches fall back to exact until the next rebuild
    throw internal_error(std::string("rebuilding the ") + index_kind_name(options_.kind) + " index failed: " + e.what());
  }
}

void VectorIndex::train_ivf(std::vector<float> x, std::vector<idx_t> labels, size_t snapshot_slots,
                            uint64_t snapshot_layout) {
  const size_t n = labels.size();
  std::unique_ptr<faiss::IndexIVFFlat> ivf;
  try {
    const size_t nlist = options_.ivf_nlist > 0 ? static_cast<size_t>(options_.ivf_nlist) : auto_nlist(n);
    auto quantizer = std::make_unique<faiss::IndexFlatIP>(dim_);
    ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), dim_, nlist, faiss::METRIC_INNER_PRODUCT);
    quantizer.release();
    ivf->own_fields = true;
    ivf->cp.niter = kIvfTrainIterations;
    ivf->cp.spherical = true;  // unit vectors: keep the centroids on the sphere too
    ivf->train(static_cast<idx_t>(n), x.data());
    ivf->add_with_ids(static_cast<idx_t>(n), x.data(), labels.data());
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
      ivf->reset();  // slots were renumbered meanwhile: list them afresh
      add_slots(*ivf, 0, slots());
    } else {
      add_slots(*ivf, snapshot_slots, slots() - snapshot_slots);  // added while training
    }
  } catch (const std::exception&) {
    return;  // as above: keep the old structure, retry on the next add()
  }
  ann_ = std::move(ivf);
  ivf_trained_at_ = n;
}

void VectorIndex::compact_and_rebuild() {
  if (dead_ > 0) {
    size_t w = 0;
    for (size_t s = 0; s < slots(); ++s) {
      if (!live_[s]) continue;
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
  }
  rebuild_ann();
}

AddResult VectorIndex::add(const std::vector<std::string>& ids, const std::vector<std::vector<float>>& vectors,
                           const std::vector<std::string>& metadata, bool upsert) {
  if (ids.size() != vectors.size()) {
    throw invalid_argument("got " + std::to_string(ids.size()) + " ids for " + std::to_string(vectors.size()) +
                           " vectors");
  }
  std::vector<float> flat;
  flat.reserve(vectors.size() * dim_);
  for (size_t i = 0; i < vectors.size(); ++i) {
    if (vectors[i].size() != static_cast<size_t>(dim_)) {
      throw invalid_argument(item_name(i, ids[i]) + " has " + std::to_string(vectors[i].size()) +
                             " values; the index holds " + std::to_string(dim_) + "-dimensional vectors");
    }
    flat.insert(flat.end(), vectors[i].begin(), vectors[i].end());
  }
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
  {
    auto lock = write_lock();
    result = add_locked(ids, vectors, n, metadata, upsert);
    if (ivf_should_train()) {
      training_ = true;
      train.reserve(slot_of_.size() * dim_);
      labels.reserve(slot_of_.size());
      for (size_t s = 0; s < slots(); ++s) {
        if (!live_[s]) continue;
        train.insert(train.end(), vectors_.begin() + s * dim_, vectors_.begin() + (s + 1) * dim_);
        labels.push_back(static_cast<idx_t>(s));
      }
      snapshot_slots = slots();
      snapshot_layout = layout_version_;
    }
  }
  // k-means runs unlocked: searches go on, over the old cells or exactly.
  if (!labels.empty()) train_ivf(std::move(train), std::move(labels), snapshot_slots, snapshot_layout);
  return result;
}

AddResult VectorIndex::add_locked(const std::vector<std::string>& ids, const float* vectors, size_t n,
                                  const std::vector<std::string>& metadata, bool upsert) {
  // Validate everything before touching the index: all or nothing.
  std::unordered_map<std::string, size_t> in_call;
  in_call.reserve(n);
  std::vector<size_t> replaced_slots;
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
      replaced_slots.push_back(existing->second);
    }
  }
  std::vector<float> rows(n * dim_);
  for (size_t i = 0; i < n; ++i) {
    std::string problem = normalize_row(vectors + i * dim_, rows.data() + i * dim_, dim_);
    if (!problem.empty()) throw invalid_argument(item_name(i, ids[i]) + ": " + problem);
  }

  // Commit. Reserve first so the appends below cannot throw half-way.
  const size_t first = slots();
  vectors_.reserve(vectors_.size() + rows.size());
  ids_.reserve(first + n);
  metadata_.reserve(first + n);
  live_.reserve(first + n);
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
    if (ann_) add_slots(*ann_, first, n);
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
      // ann_ is null now: searches are exact until the next rebuild
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
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(ann_.get());
  size_t nprobe = 0;
  int ef = 0;
  if (ivf) {
    nprobe = params.ivf_nprobe > 0 ? std::min<size_t>(params.ivf_nprobe, ivf->nlist) : ivf_default_nprobe();
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
    if (!ann_ || ivf || pass == 2) return want;
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
      if ((!ann_ || pass == 2) && n >= kBlasBatch) {
        // Many queries: FAISS's blocked BLAS scan beats one scan per query.
        faiss::knn_inner_product(x, vectors_.data(), dim_, n, slots(), kf, D.data(), I.data(), sel);
      } else if (!ann_ || pass == 2) {
#pragma omp parallel for if (n > 1)
        for (size_t i = 0; i < n; ++i) {
          exact_top_k(x + i * dim_, vectors_.data(), slots(), dim_, kf, live, &D[i * kf], &I[i * kf]);
        }
      } else if (ivf) {
        const size_t probes = pass == 0 ? nprobe : std::min<size_t>(ivf->nlist, nprobe * 4);
#pragma omp parallel for if (n > 1)
        for (size_t i = 0; i < n; ++i) ivf_top_k(*ivf, x + i * dim_, probes, kf, live, &D[i * kf], &I[i * kf]);
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
    for (int pass = 1; results[i].size() < want && pass <= 2 && ann_; ++pass) {
      const size_t kf1 = run(pass, q.data() + i * dim_, 1, D1, I1);
      collect(D1.data(), I1.data(), kf1, results[i]);
    }
  }
  return results;
}

// ---------------------------------------------------------------- persistence

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

void VectorIndex::save(const std::string& dir) const {
  recover(dir);
  const std::string tmp = dir + ".tmp", old = dir + ".old", parent = parent_of(dir);
  {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) throw internal_error("cannot create directory " + parent + ": " + ec.message());
  }
  try {
    if (::mkdir(tmp.c_str(), 0755) != 0) throw write_error("cannot create directory", tmp, errno);
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
      if (ann_) {
        ann = options_.kind == IndexKind::kHnsw ? "hnsw" : "ivf";
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
    fs::remove_all(tmp, ec);  // best effort: the last good `dir` is untouched
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

std::unique_ptr<VectorIndex> VectorIndex::load(const std::string& dir) {
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
      throw invalid_argument(manifest_path + ": not valid JSON: " + e.what());
    }
  }

  std::unique_ptr<VectorIndex> index;
  size_t slots = 0, live = 0;
  std::string ann;
  uint64_t vectors_bytes = 0, items_bytes = 0, faiss_bytes = 0;
  std::string vectors_sum, items_sum, faiss_sum;
  try {
    if (m.at("format").get<std::string>() != kFormat || m.at("version").get<int>() != kFormatVersion) {
      throw invalid_argument(manifest_path + ": not a version " + std::to_string(kFormatVersion) +
                             " refinery vector index manifest");
    }
    index = std::make_unique<VectorIndex>(m.at("dim").get<int>(), options_from_json(m.at("options")));
    slots = m.at("slots").get<size_t>();
    live = m.at("live").get<size_t>();
    ann = m.at("ann").get<std::string>();
    index->ivf_trained_at_ = m.at("ivf_trained_at").get<size_t>();
    const auto& files = m.at("files");
    vectors_bytes = files.at(kVectorsFile).at("bytes").get<uint64_t>();
    vectors_sum = files.at(kVectorsFile).at("checksum").get<std::string>();
    items_bytes = files.at(kItemsFile).at("bytes").get<uint64_t>();
    items_sum = files.at(kItemsFile).at("checksum").get<std::string>();
    if (ann != "none") {
      faiss_bytes = files.at(kFaissFile).at("bytes").get<uint64_t>();
      faiss_sum = files.at(kFaissFile).at("checksum").get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(manifest_path + ": missing or malformed field: " + e.what());
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kInvalidArgument || std::string(e.what()).rfind(manifest_path, 0) == 0) throw;
    throw invalid_argument(manifest_path + ": " + e.what());
  }
  const int dim = index->dim_;
  if (vectors_bytes != static_cast<uint64_t>(slots) * dim * sizeof(float)) {
    throw invalid_argument(manifest_path + ": " + kVectorsFile + " size does not match slots x dim");
  }
  if (!(ann == "none" || (ann == "hnsw" && index->options_.kind == IndexKind::kHnsw) ||
        (ann == "ivf" && index->options_.kind == IndexKind::kIvf))) {
    throw invalid_argument(manifest_path + ": ann " + in_quotes(ann) + " does not fit the index kind");
  }

  // Vectors: sizes first, so a corrupt manifest cannot make us allocate wildly.
  const std::string vectors_path = dir + "/" + kVectorsFile;
  check_file(vectors_path, vectors_bytes);
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
    index->ids_.reserve(slots);
    index->metadata_.reserve(slots);
    index->live_.reserve(slots);
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
  if (ann == "none") {
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
    auto loaded_ivf = dynamic_cast<faiss::IndexIVFFlat*>(loaded.get());
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
    index->ann_ = std::move(loaded);
  }
  return index;
}

}  // namespace refinery
