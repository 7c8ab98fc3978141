// The write-ahead log of one vector index: every add and delete is appended
// here (and fsynced) before it is acknowledged, so a change costs one small
// append instead of a rewrite of the whole index. A snapshot (VectorIndex::save)
// records the first segment it does not include; loading replays the
// segments from there on.
//
// On disk: `dir`/<20-digit segment number>.log. A segment starts with the
// 16-byte header "RFYLOG01" + u64 segment number, then records:
//   u32 magic, u32 payload bytes, u64 checksum of the payload, payload
//   payload (add):    u8 1, u8 upsert, u32 n, u32 dim, n x (u32 len, id),
//                     u8 has metadata, [n x (u32 len, metadata)],
//                     n * dim float32 (as given)
//   payload (remove): u8 2, u32 n, n x (u32 len, id)
// Native byte order, like the snapshot's vectors.f32.
//
// Crash rules (replay()): a record cut short or failing its checksum at the
// very end of the newest segment is a write the crash interrupted, which was
// never acknowledged: it is cut off and the log goes on. Damage anywhere
// else is invalid_argument naming the file and byte offset; the index is not
// served rather than served without acknowledged changes.
//
// Durability: append() writes the record (one pwritev(2)); sync() returns once
// it is on disk. Concurrent sync() calls share one fdatasync (group commit):
// a caller that finds a sync running waits for it and, if that did not cover
// its record, the next one. A failed append is cut back off the file and
// changes nothing; a failed fdatasync leaves the log's state on disk unknown,
// so every later append or sync fails with that error (the server must be
// restarted, which replays what did reach the disk).
//
// Thread safety: all methods may be called concurrently; the caller orders
// appends (the order of append() calls is the replay order).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace refinery {

struct IndexLogRecord {
  enum class Op : uint8_t { kAdd = 1, kRemove = 2 };
  Op op = Op::kAdd;
  bool upsert = false;
  int dim = 0;                        // add only
  std::vector<std::string> ids;
  std::vector<std::string> metadata;  // add only: empty or one per id
  std::vector<float> vectors;         // add only: ids.size() * dim, as given
};

struct IndexLogStats {
  uint64_t first_segment = 0;  // oldest segment still on disk
  uint64_t segment = 0;        // the one appends go to
  uint64_t bytes = 0;          // in all segments on disk
  uint64_t records = 0;        // appended since the oldest segment on disk
};

class IndexLog {
 public:
  using Apply = std::function<void(const IndexLogRecord&)>;

  // Opens the log in `dir` (created if missing): deletes the segments below
  // `first_segment` (a snapshot holds them), calls `apply` on every record of
  // the others in order, cuts off a torn last record, and starts a new
  // segment for appends. Errors from `apply` propagate.
  IndexLog(std::string dir, uint64_t first_segment, const Apply& apply);
  ~IndexLog();
  IndexLog(const IndexLog&) = delete;
  IndexLog& operator=(const IndexLog&) = delete;

  // Append a record; return its sequence number for sync(). The write is
  // whole or not at all: on failure nothing is left in the file.
  uint64_t append_add(const std::vector<std::string>& ids, const float* vectors, size_t n, int dim,
                      const std::vector<std::string>& metadata, bool upsert);
  uint64_t append_remove(const std::vector<std::string>& ids);
  // Returns once record `seq` (and every one before it) is on disk.
  void sync(uint64_t seq);

  // Syncs and closes the current segment and opens the next; returns the new
  // segment's number. A snapshot of the index taken with no append between
  // rotate() and the snapshot covers every segment below that number.
  uint64_t rotate();
  // Deletes the segments below `segment` (covered by a durable snapshot).
  void drop_before(uint64_t segment);

  IndexLogStats stats() const;
  const std::string& dir() const { return dir_; }
  // What opening repaired ("cut 37 torn bytes off FILE at byte N"), or empty.
  const std::string& repair() const { return repair_; }
  // The file of segment `n`.
  std::string segment_path(uint64_t n) const;

 private:
  uint64_t append(const std::string& payload);
  void open_segment(uint64_t n);  // creates it with its header; mu_ held
  void throw_if_failed() const;   // mu_ held

  const std::string dir_;
  mutable std::mutex mu_;
  std::condition_variable synced_cv_;
  int fd_ = -1;
  uint64_t segment_ = 0;
  struct Segment {
    uint64_t bytes = 0;
    uint64_t records = 0;
  };
  std::map<uint64_t, Segment> segments_;  // on disk, by number; the last is segment_
  uint64_t appended_ = 0;  // records appended (sequence numbers 1..appended_)
  uint64_t synced_ = 0;    // records known to be on disk
  bool syncing_ = false;        // an fdatasync runs without mu_
  std::string failure_;         // set by a failed fdatasync: the log is unusable
  std::string repair_;
};

}  // namespace refinery
