#include "core/index/persistent_index.h"

#include <chrono>
#include <filesystem>

#include "core/base/error.h"
#include "core/index/index_log.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSnapshotDir = "vectors";
constexpr const char* kLogDir = "log";
// Replay applies runs of plain adds in batches of up to this many items:
// one batched IVF assignment instead of one per logged call.
constexpr size_t kReplayBatch = 65536;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

uint64_t folder_bytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code size_ec;
    const auto n = fs::file_size(it->path(), size_ec);
    if (!size_ec) total += n;
  }
  return total;
}

// Collects consecutive plain adds during replay and applies them together.
class ReplayBatch {
 public:
  explicit ReplayBatch(VectorIndex* index) : index_(index) {}

  void apply(const IndexLogRecord& rec) {
    const bool plain_add = rec.op == IndexLogRecord::Op::kAdd && !rec.upsert;
    if (!plain_add || ids_.size() + rec.ids.size() > kReplayBatch) flush();
    if (!plain_add) {
      if (rec.op == IndexLogRecord::Op::kAdd) {
        index_->add(rec.ids, rec.vectors.data(), rec.ids.size(), rec.metadata, rec.upsert);
      } else {
        index_->remove(rec.ids);
      }
      return;
    }
    if (rec.dim != index_->dim()) {
      throw invalid_argument("a logged add has " + std::to_string(rec.dim) + "-dimensional vectors; the index holds " +
                             std::to_string(index_->dim()));
    }
    if (!rec.metadata.empty() && metadata_.size() < ids_.size()) metadata_.resize(ids_.size());
    ids_.insert(ids_.end(), rec.ids.begin(), rec.ids.end());
    vectors_.insert(vectors_.end(), rec.vectors.begin(), rec.vectors.end());
    if (!rec.metadata.empty()) {
      metadata_.insert(metadata_.end(), rec.metadata.begin(), rec.metadata.end());
    } else if (!metadata_.empty()) {
      metadata_.resize(ids_.size());
    }
  }

  void flush() {
    if (ids_.empty()) return;
    index_->add(ids_, vectors_.data(), ids_.size(), metadata_, false);
    ids_.clear();
    vectors_.clear();
    metadata_.clear();
  }

 private:
  VectorIndex* index_;
  std::vector<std::string> ids_;
  std::vector<float> vectors_;
  std::vector<std::string> metadata_;
};

}  // namespace

PersistentIndex::PersistentIndex(std::string dir, std::shared_ptr<VectorIndex> index,
                                 const PersistentIndexOptions& options)
    : dir_(std::move(dir)), options_(options), index_(std::move(index)) {}

PersistentIndex::~PersistentIndex() = default;

void PersistentIndex::initialize(const std::string& dir, int dim, const IndexOptions& index_options) {
  VectorIndex index(dim, index_options);  // validates dim and options
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw internal_error("cannot create " + dir + ": " + ec.message());
  index.save(dir + "/" + kSnapshotDir, 0);
}

std::unique_ptr<PersistentIndex> PersistentIndex::open(const std::string& dir, const PersistentIndexOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  uint64_t first_segment = 0;
  // Room for what the log may add (its vectors dominate its bytes), so the
  // replay never copies the index to grow it.
  std::shared_ptr<VectorIndex> index =
      VectorIndex::load(dir + "/" + kSnapshotDir, &first_segment, folder_bytes(dir + "/" + kLogDir));
  // Training k-means inside a replay (or a write) would stall it; maintain() does it.
  index->set_background_training(true);
  std::unique_ptr<PersistentIndex> self(new PersistentIndex(dir, index, options));
  ReplayBatch batch(index.get());
  uint64_t replayed = 0;
  self->log_ = std::make_unique<IndexLog>(dir + "/" + kLogDir, first_segment, [&](const IndexLogRecord& rec) {
    batch.apply(rec);
    ++replayed;
  });
  try {
    batch.flush();
  } catch (const Error& e) {
    throw invalid_argument(dir + "/" + kLogDir + ": the last logged adds cannot be applied: " + e.what());
  }
  std::lock_guard<std::mutex> lock(self->write_mu_);
  self->measure_snapshot();
  std::lock_guard<std::mutex> stats(self->stats_mu_);
  self->stats_.replayed_records = replayed;
  self->stats_.open_seconds = seconds_since(start);
  self->stats_.log_repair = self->log_->repair();
  return self;
}

void PersistentIndex::check_writable() const {
  if (closed_) throw not_found("the index at " + dir_ + " was closed (dropped)");
  if (!failure_.empty()) {
    throw internal_error("the index at " + dir_ + " stopped taking changes: " + failure_ +
                         "; restart the server to replay its log");
  }
}

AddResult PersistentIndex::add(const std::vector<std::string>& ids, const float* vectors, size_t n,
                               const std::vector<std::string>& metadata, bool upsert) {
  std::unique_lock<std::mutex> writing(write_mu_);
  check_writable();
  index_->check_add(ids, vectors, n, metadata, upsert);  // throws before anything is logged
  if (n == 0) return {};
  const uint64_t seq = log_->append_add(ids, vectors, n, index_->dim(), metadata, upsert);
  AddResult result;
  try {
    result = index_->add(ids, vectors, n, metadata, upsert);
  } catch (const std::exception& e) {
    // Logged but not applied (FAISS failed or memory ran out): memory and
    // log disagree until a restart replays the log.
    failure_ = std::string("a logged add could not be applied: ") + e.what();
    throw;
  }
  writing.unlock();
  log_->sync(seq);
  return result;
}

size_t PersistentIndex::remove(const std::vector<std::string>& ids) {
  std::unique_lock<std::mutex> writing(write_mu_);
  check_writable();
  std::vector<std::string> present;
  for (const auto& id : ids) {
    if (index_->contains(id)) present.push_back(id);
  }
  if (present.empty()) return 0;  // nothing to log
  const uint64_t seq = log_->append_remove(present);
  size_t removed = 0;
  try {
    removed = index_->remove(present);
  } catch (const std::exception& e) {
    failure_ = std::string("a logged delete could not be applied: ") + e.what();
    throw;
  }
  writing.unlock();
  log_->sync(seq);
  return removed;
}

bool PersistentIndex::checkpoint_due() const {
  const IndexLogStats log = log_->stats();
  std::lock_guard<std::mutex> lock(stats_mu_);
  const double fraction = options_.checkpoint_log_fraction * static_cast<double>(stats_.snapshot_bytes);
  return log.records > 0 && log.bytes >= options_.checkpoint_min_log_bytes && static_cast<double>(log.bytes) >= fraction;
}

void PersistentIndex::checkpoint() {
  std::lock_guard<std::mutex> writing(write_mu_);
  check_writable();
  checkpoint_locked();
}

void PersistentIndex::checkpoint_locked() {
  const auto start = std::chrono::steady_clock::now();
  // No append can come between the rotation and the snapshot (write_mu_):
  // the snapshot holds exactly the segments below `segment`.
  const uint64_t segment = log_->rotate();
  index_->save(dir_ + "/" + kSnapshotDir, segment);
  log_->drop_before(segment);
  measure_snapshot();
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++stats_.checkpoints;
  stats_.last_checkpoint_seconds = seconds_since(start);
}

bool PersistentIndex::maintain() {
  {
    std::lock_guard<std::mutex> writing(write_mu_);
    if (closed_ || !failure_.empty()) return false;
  }
  // k-means runs without write_mu_: changes go on meanwhile. New cells are
  // checkpointed at once, so a restart does not train them again.
  const bool trained = index_->train_if_due();
  if (!trained && !checkpoint_due()) return false;
  std::lock_guard<std::mutex> writing(write_mu_);
  if (closed_ || !failure_.empty()) return trained;  // dropped meanwhile: write nothing
  checkpoint_locked();
  return true;
}

void PersistentIndex::close() {
  std::lock_guard<std::mutex> writing(write_mu_);
  closed_ = true;
}

void PersistentIndex::reopen() {
  std::lock_guard<std::mutex> writing(write_mu_);
  closed_ = false;
}

void PersistentIndex::measure_snapshot() {
  const uint64_t bytes = folder_bytes(dir_ + "/" + kSnapshotDir);
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.snapshot_bytes = bytes;
}

PersistentIndexStats PersistentIndex::stats() const {
  const IndexLogStats log = log_->stats();
  std::lock_guard<std::mutex> lock(stats_mu_);
  PersistentIndexStats s = stats_;
  s.log_bytes = log.bytes;
  s.log_records = log.records;
  return s;
}

}  // namespace refinery
