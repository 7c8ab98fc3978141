// Refine jobs, their events and their checkpoints in one SQLite file
// (<data-dir>/jobs.db), so a job's history and progress survive restarts and
// crashes. The file runs in WAL mode with synchronous=NORMAL: every returned
// write is durable across a crash of the process (kill -9), though not
// necessarily across a power loss. The schema version lives in
// PRAGMA user_version; a file written by a newer refineryd is refused.
//
// Jobs are stored as serialized refinery::v1::Job plus the columns they are
// looked up by (id, state, client_request_id, created_unix_ms); events as
// serialized refinery::v1::JobEvent keyed by (job_id, seq). A job's last_seq
// belongs to the store: it is the seq of the job's latest event, set by
// append_event and never by insert_job or update_job.
//
// Step events are thinned as a job grows long: past `max_step_events` of one
// job, the older ones are kept only at steps that are multiples of a stride
// that doubles each time (the newest tenth always stay), so a job of a
// billion steps keeps its whole loss curve at an even, coarser resolution in
// bounded space. Other events (state, eval, checkpoint, result) are never
// dropped. Seqs are never reused: a replay skips the thinned ones.
//
// Thread-safe: one connection behind a mutex. Several JobStores (or
// processes) may share a file; writes are BEGIN IMMEDIATE transactions.
// Failures are refinery::Error naming the file and SQLite's reason:
// NOT_FOUND for unknown job ids, INVALID_ARGUMENT for a file that is not a
// database (or conflicting input), FAILED_PRECONDITION for a newer schema,
// RESOURCE_EXHAUSTED for a full disk, INTERNAL otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "refinery/v1/job.pb.h"

namespace refinery {

struct JobStoreOptions {
  int64_t max_step_events = 10'000;  // per job, before the older ones are thinned; >= 10
};

struct CheckpointRecord {
  int64_t step = 0;
  std::string path;
  int64_t created_unix_ms = 0;
};

class JobStore {
 public:
  // 1: jobs, events, checkpoints. 2: sweeps. 3: step events' steps and their
  // thinning stride (older files are upgraded; their events stay whole).
  static constexpr int kSchemaVersion = 3;

  // Creates the file and its schema when missing.
  explicit JobStore(const std::string& path, JobStoreOptions options = {});
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Inserts `job` (its id must be non-empty and new; its last_seq is stored
  // as 0). When job.client_request_id() is non-empty and a job with that
  // request id exists, returns that job and sets *inserted=false instead;
  // two concurrent submits with one request id make one job.
  // `inserted` may be null.
  refinery::v1::Job insert_job(const refinery::v1::Job& job, bool* inserted = nullptr);
  std::optional<refinery::v1::Job> get_job(const std::string& id) const;
  // The job submitted with this (non-empty) client request id, if any.
  std::optional<refinery::v1::Job> find_by_request_id(const std::string& client_request_id) const;
  // Oldest first (created_unix_ms, then insertion order); empty = all states.
  std::vector<refinery::v1::Job> list_jobs(const std::vector<refinery::v1::JobState>& states = {}) const;
  // Replaces the job with job.id() (its last_seq is kept). NOT_FOUND when missing.
  void update_job(const refinery::v1::Job& job);

  // Appends one event in one transaction: seq = last_seq + 1,
  // unix_ms = now when 0, job_id filled in; the job's last_seq becomes seq.
  // When `job_update` is given (its id must be job_id) the job row is
  // replaced by it in the same transaction, so a state change and its event
  // are never seen apart. Returns the stored event.
  refinery::v1::JobEvent append_event(const std::string& job_id, refinery::v1::JobEvent event,
                                      const refinery::v1::Job* job_update = nullptr);
  // Events with seq >= from_seq, in order, at most `limit` (0 = no limit).
  std::vector<refinery::v1::JobEvent> events(const std::string& job_id, int64_t from_seq, int64_t limit = 0) const;

  // One checkpoint per (job, step); adding a step again replaces its record.
  void add_checkpoint(const std::string& job_id, const CheckpointRecord& record);
  std::vector<CheckpointRecord> checkpoints(const std::string& job_id) const;  // ascending step
  // Removing a step the job has no record for does nothing.
  void remove_checkpoint(const std::string& job_id, int64_t step);

  // Removes the job, its events and its checkpoint records (the checkpoint
  // files are the caller's business). NOT_FOUND when missing.
  void delete_job(const std::string& id);

  // Stores a sweep and its jobs, each job with its first event, in one
  // transaction: all or nothing. When sweep.client_request_id() names a
  // sweep already stored, returns that one with *inserted=false and stores
  // nothing. The sweep's `jobs` are not stored.
  refinery::v1::Sweep insert_sweep(const refinery::v1::Sweep& sweep,
                                   const std::vector<std::pair<refinery::v1::Job, refinery::v1::JobEvent>>& jobs,
                                   bool* inserted = nullptr);
  std::optional<refinery::v1::Sweep> get_sweep(const std::string& id) const;
  std::vector<refinery::v1::Sweep> list_sweeps() const;  // oldest first

  const std::string& path() const { return path_; }

 private:
  class Connection;  // keeps sqlite3.h out of this header
  // The bodies of insert_job and append_event, for a caller that holds mu_
  // inside a transaction.
  refinery::v1::Job insert_job_in_tx(const refinery::v1::Job& job, bool* inserted);
  refinery::v1::JobEvent append_event_in_tx(const std::string& job_id, refinery::v1::JobEvent event,
                                            const refinery::v1::Job* job_update);
  // After a step event: thins the job's older step events when they are
  // more than options_.max_step_events. Caller holds mu_ in a transaction.
  void thin_step_events_in_tx(const std::string& job_id, int64_t last_seq);

  std::string path_;
  JobStoreOptions options_;
  mutable std::mutex mu_;
  std::unique_ptr<Connection> db_;  // guarded by mu_
};

}  // namespace refinery
