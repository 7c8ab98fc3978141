#include "server/store/job_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <tuple>
#include <unordered_map>

#include "core/base/error.h"

// Row layout. The columns are what rows are found and ordered by and are
// authoritative; the blobs hold the rest of the message:
//   jobs.last_seq overrides Job.last_seq (cleared in the blob);
//   job_events.job_id/seq override JobEvent.job_id/seq (cleared in the blob).

namespace refinery {
namespace {

using refinery::v1::Job;
using refinery::v1::JobEvent;

constexpr int kBusyTimeoutMs = 10000;

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE jobs (
  id TEXT PRIMARY KEY NOT NULL,
  state INTEGER NOT NULL,
  client_request_id TEXT,  -- NULL when the job has none
  created_unix_ms INTEGER NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  job BLOB NOT NULL
);
CREATE UNIQUE INDEX jobs_by_client_request_id ON jobs (client_request_id) WHERE client_request_id IS NOT NULL;
CREATE INDEX jobs_by_state ON jobs (state, created_unix_ms);
CREATE INDEX jobs_by_created ON jobs (created_unix_ms);
CREATE TABLE job_events (
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE job_checkpoints (
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  path TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, step)
) WITHOUT ROWID;
)sql";

// Version 2: sweeps, each a serialized refinery::v1::Sweep (without its jobs).
constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE sweeps (
  id TEXT PRIMARY KEY NOT NULL,
  client_request_id TEXT,
  created_unix_ms INTEGER NOT NULL,
  sweep BLOB NOT NULL
);
CREATE UNIQUE INDEX sweeps_by_client_request_id ON sweeps (client_request_id) WHERE client_request_id IS NOT NULL;
)sql";

// Version 3: a step event's step (NULL for other events and for events
// stored before), and per job the step events kept and their stride.
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE job_events ADD COLUMN step INTEGER;
ALTER TABLE jobs ADD COLUMN step_events INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN step_stride INTEGER NOT NULL DEFAULT 1;
)sql";

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error sqlite_error(int rc, const std::string& message) {
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return invalid_argument(message + " (move the file away to start with an empty job history)");
    case SQLITE_CONSTRAINT: return invalid_argument(message);
    case SQLITE_FULL: return resource_exhausted(message);
    default: return internal_error(message);
  }
}

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// One use of a cached prepared statement: bind, step, read columns. The
// statement is reset (bindings cleared) when the use ends, so the cache can
// hand it out again.
class Statement {
 public:
  Statement(sqlite3_stmt* stmt, const std::string& path) : stmt_(stmt), path_(path) {}
  ~Statement() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, int64_t value) { return check(sqlite3_bind_int64(stmt_, index, value)); }
  Statement& bind(int index, const std::string& text) {
    return check(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Statement& bind_text_or_null(int index, const std::string& text) {
    return text.empty() ? check(sqlite3_bind_null(stmt_, index)) : bind(index, text);
  }
  Statement& bind_blob(int index, const std::string& bytes) {
    // A zero-length blob needs a non-null pointer, or SQLite binds NULL.
    return check(sqlite3_bind_blob64(stmt_, index, bytes.empty() ? "" : bytes.data(), bytes.size(), SQLITE_TRANSIENT));
  }

  // True when a row is ready, false when the statement is done.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(rc);
  }
  void run() {
    while (step()) {
    }
  }

  int64_t int64(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string text(int column) const {
    const unsigned char* p = sqlite3_column_text(stmt_, column);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, column)) : std::string();
  }
  // Parses a blob column into `message`; false when it does not parse.
  bool parse(int column, google::protobuf::MessageLite* message) const {
    const void* p = sqlite3_column_blob(stmt_, column);
    int n = sqlite3_column_bytes(stmt_, column);
    return message->ParseFromArray(p ? p : "", n);
  }

 private:
  Statement& check(int rc) {
    if (rc != SQLITE_OK) fail(rc);
    return *this;
  }
  [[noreturn]] void fail(int rc) {
    sqlite3* db = sqlite3_db_handle(stmt_);
    throw sqlite_error(rc, "jobs database " + path_ + ": " + sqlite3_sql(stmt_) + ": " + sqlite3_errmsg(db));
  }

  sqlite3_stmt* stmt_;
  const std::string& path_;
};

std::string job_blob(const Job& job) {
  Job copy = job;
  copy.clear_last_seq();
  return copy.SerializeAsString();
}

}  // namespace

class JobStore::Connection {
 public:
  explicit Connection(const std::string& path) : path_(path) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db_.reset(db);
    if (rc != SQLITE_OK) {
      throw sqlite_error(rc, "cannot open the jobs database " + path + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    }
    if (sqlite3_db_readonly(db, "main") == 1) {
      throw internal_error("the jobs database " + path + " is read-only: refineryd needs to write it");
    }
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    exec("PRAGMA foreign_keys = ON");
    // The first statement that reads the file: a file that is not a database fails here.
    std::string mode;
    {
      Statement q = prepare("PRAGMA journal_mode = WAL");
      if (q.step()) mode = q.text(0);
    }
    if (mode != "wal") {
      throw failed_precondition("the jobs database " + path + " cannot use a write-ahead log (journal mode is " +
                                single_quoted(mode) + "); put --data-dir on a local file system");
    }
    exec("PRAGMA synchronous = NORMAL");
    migrate();
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  class Transaction;

  // `sql` is cached: pass constant text only.
  Statement prepare(const char* sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        throw sqlite_error(rc, "jobs database " + path_ + ": " + sql + ": " + sqlite3_errmsg(db_.get()));
      }
      it = statements_.emplace(sql, StmtPtr(stmt)).first;
    }
    return Statement(it->second.get(), path_);
  }

  // Statements that run once (schema, pragmas), several per string allowed.
  void exec(const char* sql) {
    char* message = nullptr;
    int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
      std::string text = message ? message : sqlite3_errstr(rc);
      sqlite3_free(message);
      std::string first_line(sql, std::find(sql, sql + std::char_traits<char>::length(sql), ';'));
      throw sqlite_error(rc, "jobs database " + path_ + ": " + first_line + ": " + text);
    }
  }

  int changes() const { return sqlite3_changes(db_.get()); }
  bool in_transaction() const { return sqlite3_get_autocommit(db_.get()) == 0; }

  // A job's stored message with its last_seq; INTERNAL when the blob does not parse.
  Job read_job(const Statement& q, int last_seq_column, int blob_column, const std::string& id) const {
    Job job;
    if (!q.parse(blob_column, &job)) {
      throw internal_error("jobs database " + path_ + ": the row of job " + single_quoted(id) + " does not parse");
    }
    job.set_last_seq(q.int64(last_seq_column));
    return job;
  }

  void require_job(const std::string& id) {
    Statement q = prepare("SELECT 1 FROM jobs WHERE id = ?");
    q.bind(1, id);
    if (!q.step()) throw not_found("job " + single_quoted(id) + " not found");
  }

  const std::string& path() const { return path_; }

 private:
  int user_version() {
    Statement q = prepare("PRAGMA user_version");
    return q.step() ? static_cast<int>(q.int64(0)) : 0;
  }
  void migrate();

  std::string path_;
  DbPtr db_;
  std::unordered_map<std::string, StmtPtr> statements_;  // destroyed before db_
};

// BEGIN IMMEDIATE ... COMMIT; rolled back when left without commit().
class JobStore::Connection::Transaction {
 public:
  explicit Transaction(Connection& db) : db_(db) { db_.prepare("BEGIN IMMEDIATE").run(); }
  ~Transaction() {
    // An error may already have rolled SQLite back; the ROLLBACK's own failure has nothing to add.
    if (!committed_ && db_.in_transaction()) {
      try {
        db_.exec("ROLLBACK");
      } catch (const Error&) {
      }
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit() {
    db_.prepare("COMMIT").run();
    committed_ = true;
  }

 private:
  Connection& db_;
  bool committed_ = false;
};

void JobStore::Connection::migrate() {
  auto check_not_newer = [this](int version) {
    if (version > kSchemaVersion) {
      throw failed_precondition("the jobs database " + path_ + " has schema version " + std::to_string(version) +
                                ", newer than this refineryd knows (" + std::to_string(kSchemaVersion) +
                                "): run a newer refineryd or use another --data-dir");
    }
  };
  check_not_newer(user_version());
  if (user_version() == kSchemaVersion) return;
  Transaction tx(*this);
  int version = user_version();  // again: another process may have created it meanwhile
  check_not_newer(version);
  if (version == 0) {
    exec(kSchemaV1);
    version = 1;
  }
  if (version == 1) {
    exec(kSchemaV2);
    version = 2;
  }
  if (version == 2) {
    exec(kSchemaV3);
    version = 3;
  }
  exec(("PRAGMA user_version = " + std::to_string(version)).c_str());
  tx.commit();
}

JobStore::JobStore(const std::string& path, JobStoreOptions options) : path_(path), options_(options) {
  if (options_.max_step_events < 10) {
    throw invalid_argument("max_step_events must be at least 10, got " + std::to_string(options_.max_step_events));
  }
  db_ = std::make_unique<Connection>(path);
}

JobStore::~JobStore() = default;

Job JobStore::insert_job(const Job& job, bool* inserted) {
  std::lock_guard<std::mutex> lock(mu_);
  Connection::Transaction tx(*db_);
  bool added = false;
  Job stored = insert_job_in_tx(job, &added);
  if (added) tx.commit();  // else the transaction only read: rolling it back is fine
  if (inserted) *inserted = added;
  return stored;
}

Job JobStore::insert_job_in_tx(const Job& job, bool* inserted) {
  if (job.id().empty()) throw invalid_argument("a job needs an id to be stored");
  if (!job.client_request_id().empty()) {
    Statement q = db_->prepare("SELECT id, last_seq, job FROM jobs WHERE client_request_id = ?");
    q.bind(1, job.client_request_id());
    if (q.step()) {
      Job existing = db_->read_job(q, 1, 2, q.text(0));
      *inserted = false;
      return existing;
    }
  }
  {
    Statement q = db_->prepare("SELECT 1 FROM jobs WHERE id = ?");
    q.bind(1, job.id());
    if (q.step()) throw invalid_argument("job id " + single_quoted(job.id()) + " already exists in " + path_);
  }
  {
    Statement q = db_->prepare(
        "INSERT INTO jobs (id, state, client_request_id, created_unix_ms, last_seq, job) VALUES (?, ?, ?, ?, 0, ?)");
    q.bind(1, job.id()).bind(2, int64_t{job.state()}).bind_text_or_null(3, job.client_request_id());
    q.bind(4, job.created_unix_ms()).bind_blob(5, job_blob(job));
    q.run();
  }
  *inserted = true;
  Job stored = job;
  stored.set_last_seq(0);
  return stored;
}

std::optional<Job> JobStore::get_job(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q = db_->prepare("SELECT last_seq, job FROM jobs WHERE id = ?");
  q.bind(1, id);
  if (!q.step()) return std::nullopt;
  return db_->read_job(q, 0, 1, id);
}

std::optional<Job> JobStore::find_by_request_id(const std::string& client_request_id) const {
  if (client_request_id.empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  Statement q = db_->prepare("SELECT id, last_seq, job FROM jobs WHERE client_request_id = ?");
  q.bind(1, client_request_id);
  if (!q.step()) return std::nullopt;
  return db_->read_job(q, 1, 2, q.text(0));
}

std::vector<Job> JobStore::list_jobs(const std::vector<refinery::v1::JobState>& states) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Job> jobs;
  if (states.empty()) {
    Statement q = db_->prepare("SELECT id, last_seq, job FROM jobs ORDER BY created_unix_ms, rowid");
    while (q.step()) jobs.push_back(db_->read_job(q, 1, 2, q.text(0)));
    return jobs;
  }
  // One indexed query per state, merged into one order.
  std::vector<std::tuple<int64_t, int64_t, size_t>> order;  // created, rowid, index in jobs
  for (int state : std::set<int>(states.begin(), states.end())) {
    Statement q = db_->prepare("SELECT id, last_seq, job, created_unix_ms, rowid FROM jobs WHERE state = ?");
    q.bind(1, int64_t{state});
    while (q.step()) {
      order.emplace_back(q.int64(3), q.int64(4), jobs.size());
      jobs.push_back(db_->read_job(q, 1, 2, q.text(0)));
    }
  }
  std::sort(order.begin(), order.end());
  std::vector<Job> sorted;
  sorted.reserve(jobs.size());
  for (const auto& o : order) sorted.push_back(std::move(jobs[std::get<2>(o)]));
  return sorted;
}

void JobStore::update_job(const Job& job) {
  std::lock_guard<std::mutex> lock(mu_);
  Connection::Transaction tx(*db_);
  {
    Statement q = db_->prepare("UPDATE jobs SET state = ?, client_request_id = ?, created_unix_ms = ?, job = ? WHERE id = ?");
    q.bind(1, int64_t{job.state()}).bind_text_or_null(2, job.client_request_id()).bind(3, job.created_unix_ms());
    q.bind_blob(4, job_blob(job)).bind(5, job.id());
    q.run();
  }
  if (db_->changes() == 0) throw not_found("job " + single_quoted(job.id()) + " not found");
  tx.commit();
}

JobEvent JobStore::append_event(const std::string& job_id, JobEvent event, const Job* job_update) {
  std::lock_guard<std::mutex> lock(mu_);
  Connection::Transaction tx(*db_);
  JobEvent stored = append_event_in_tx(job_id, std::move(event), job_update);
  tx.commit();
  return stored;
}

JobEvent JobStore::append_event_in_tx(const std::string& job_id, JobEvent event, const Job* job_update) {
  if (job_update && job_update->id() != job_id) {
    throw invalid_argument("an event of job " + single_quoted(job_id) + " came with an update of job " +
                           single_quoted(job_update->id()));
  }
  int64_t last_seq = 0;
  {
    Statement q = db_->prepare("SELECT last_seq FROM jobs WHERE id = ?");
    q.bind(1, job_id);
    if (!q.step()) throw not_found("job " + single_quoted(job_id) + " not found");
    last_seq = q.int64(0);
  }
  const int64_t seq = last_seq + 1;
  if (event.unix_ms() == 0) event.set_unix_ms(now_unix_ms());
  event.clear_seq();
  event.clear_job_id();
  {
    Statement q = db_->prepare("INSERT INTO job_events (job_id, seq, event, step) VALUES (?, ?, ?, ?)");
    q.bind(1, job_id).bind(2, seq).bind_blob(3, event.SerializeAsString());
    if (event.has_step()) q.bind(4, event.step().step());
    q.run();
  }
  if (job_update) {
    Statement q = db_->prepare(
        "UPDATE jobs SET state = ?, client_request_id = ?, created_unix_ms = ?, last_seq = ?, job = ? WHERE id = ?");
    q.bind(1, int64_t{job_update->state()}).bind_text_or_null(2, job_update->client_request_id());
    q.bind(3, job_update->created_unix_ms()).bind(4, seq).bind_blob(5, job_blob(*job_update)).bind(6, job_id);
    q.run();
  } else {
    Statement q = db_->prepare("UPDATE jobs SET last_seq = ? WHERE id = ?");
    q.bind(1, seq).bind(2, job_id);
    q.run();
  }
  if (event.has_step()) thin_step_events_in_tx(job_id, seq);
  event.set_seq(seq);
  event.set_job_id(job_id);
  return event;
}

void JobStore::thin_step_events_in_tx(const std::string& job_id, int64_t last_seq) {
  int64_t kept = 0, stride = 1;
  {
    Statement q = db_->prepare("UPDATE jobs SET step_events = step_events + 1 WHERE id = ?");
    q.bind(1, job_id);
    q.run();
    Statement r = db_->prepare("SELECT step_events, step_stride FROM jobs WHERE id = ?");
    r.bind(1, job_id);
    r.step();
    kept = r.int64(0);
    stride = r.int64(1);
  }
  if (kept <= options_.max_step_events) return;
  // The newest tenth stay whole; older ones only at multiples of a stride
  // doubled until three quarters of the limit are left, so the next thinning
  // is a quarter of the limit of appends away (each costs one pass over the
  // job's events).
  const int64_t recent = std::max<int64_t>(options_.max_step_events / 10, 1);
  int64_t cutoff = last_seq;
  {
    Statement q = db_->prepare(
        "SELECT seq FROM job_events WHERE job_id = ? AND step IS NOT NULL ORDER BY seq DESC LIMIT 1 OFFSET ?");
    q.bind(1, job_id).bind(2, recent - 1);
    if (q.step()) cutoff = q.int64(0);
  }
  for (;;) {
    // Older events off the stride (those since the last thinning), then, if
    // that is not enough, the stride doubled.
    Statement del = db_->prepare(
        "DELETE FROM job_events WHERE job_id = ? AND step IS NOT NULL AND seq < ? AND step % ? != 0");
    del.bind(1, job_id).bind(2, cutoff).bind(3, stride);
    del.run();
    Statement count = db_->prepare("SELECT COUNT(*) FROM job_events WHERE job_id = ? AND step IS NOT NULL");
    count.bind(1, job_id);
    count.step();
    kept = count.int64(0);
    if (kept <= options_.max_step_events * 3 / 4 || stride >= (int64_t(1) << 40)) break;
    stride *= 2;
  }
  Statement q = db_->prepare("UPDATE jobs SET step_events = ?, step_stride = ? WHERE id = ?");
  q.bind(1, kept).bind(2, stride).bind(3, job_id);
  q.run();
}

std::vector<JobEvent> JobStore::events(const std::string& job_id, int64_t from_seq, int64_t limit) const {
  if (limit < 0) throw invalid_argument("events of job " + single_quoted(job_id) + ": limit must be >= 0, got " + std::to_string(limit));
  std::lock_guard<std::mutex> lock(mu_);
  db_->require_job(job_id);
  std::vector<JobEvent> events;
  Statement q = db_->prepare("SELECT seq, event FROM job_events WHERE job_id = ? AND seq >= ? ORDER BY seq LIMIT ?");
  q.bind(1, job_id).bind(2, from_seq).bind(3, limit == 0 ? int64_t{-1} : limit);
  while (q.step()) {
    JobEvent event;
    const int64_t seq = q.int64(0);
    if (!q.parse(1, &event)) {
      throw internal_error("jobs database " + path_ + ": event " + std::to_string(seq) + " of job " + single_quoted(job_id) +
                           " does not parse");
    }
    event.set_seq(seq);
    event.set_job_id(job_id);
    events.push_back(std::move(event));
  }
  return events;
}

void JobStore::add_checkpoint(const std::string& job_id, const CheckpointRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  Connection::Transaction tx(*db_);
  db_->require_job(job_id);
  {
    Statement q = db_->prepare(
        "INSERT OR REPLACE INTO job_checkpoints (job_id, step, path, created_unix_ms) VALUES (?, ?, ?, ?)");
    q.bind(1, job_id).bind(2, record.step).bind(3, record.path).bind(4, record.created_unix_ms);
    q.run();
  }
  tx.commit();
}

std::vector<CheckpointRecord> JobStore::checkpoints(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  db_->require_job(job_id);
  std::vector<CheckpointRecord> records;
  Statement q = db_->prepare("SELECT step, path, created_unix_ms FROM job_checkpoints WHERE job_id = ? ORDER BY step");
  q.bind(1, job_id);
  while (q.step()) records.push_back(CheckpointRecord{q.int64(0), q.text(1), q.int64(2)});
  return records;
}

void JobStore::remove_checkpoint(const std::string& job_id, int64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  Connection::Transaction tx(*db_);
  db_->require_job(job_id);
  {
    Statement q = db_->prepare("DELETE FROM job_checkpoints WHERE job_id = ? AND step = ?");
    q.bind(1, job_id).bind(2, step);
    q.run();
  }
  tx.commit();
}

void JobStore::delete_job(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Connection::Transaction tx(*db_);
  db_->require_job(id);
  for (const char* sql : {"DELETE FROM job_events WHERE job_id = ?", "DELETE FROM job_checkpoints WHERE job_id = ?",
                          "DELETE FROM jobs WHERE id = ?"}) {
    Statement q = db_->prepare(sql);
    q.bind(1, id);
    q.run();
  }
  tx.commit();
}

v1::Sweep JobStore::insert_sweep(const v1::Sweep& sweep, const std::vector<std::pair<Job, JobEvent>>& jobs,
                                 bool* inserted) {
  if (sweep.id().empty()) throw invalid_argument("a sweep needs an id to be stored");
  std::lock_guard<std::mutex> lock(mu_);
  Connection::Transaction tx(*db_);
  if (!sweep.client_request_id().empty()) {
    Statement q = db_->prepare("SELECT sweep FROM sweeps WHERE client_request_id = ?");
    q.bind(1, sweep.client_request_id());
    if (q.step()) {
      v1::Sweep existing;
      if (!q.parse(0, &existing)) throw internal_error("jobs database " + path_ + ": a sweep row does not parse");
      if (inserted) *inserted = false;
      return existing;
    }
  }
  for (const auto& [job, event] : jobs) {
    bool added = false;
    insert_job_in_tx(job, &added);
    if (!added) throw invalid_argument("job " + single_quoted(job.id()) + " of sweep " + single_quoted(sweep.id()) + " exists");
    append_event_in_tx(job.id(), event, nullptr);
  }
  v1::Sweep stored = sweep;
  stored.clear_jobs();
  {
    Statement q = db_->prepare("INSERT INTO sweeps (id, client_request_id, created_unix_ms, sweep) VALUES (?, ?, ?, ?)");
    q.bind(1, sweep.id()).bind_text_or_null(2, sweep.client_request_id()).bind(3, sweep.created_unix_ms());
    q.bind_blob(4, stored.SerializeAsString());
    q.run();
  }
  tx.commit();
  if (inserted) *inserted = true;
  return stored;
}

std::optional<v1::Sweep> JobStore::get_sweep(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q = db_->prepare("SELECT sweep FROM sweeps WHERE id = ?");
  q.bind(1, id);
  if (!q.step()) return std::nullopt;
  v1::Sweep sweep;
  if (!q.parse(0, &sweep)) throw internal_error("jobs database " + path_ + ": sweep " + single_quoted(id) + " does not parse");
  return sweep;
}

std::vector<v1::Sweep> JobStore::list_sweeps() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Sweep> out;
  Statement q = db_->prepare("SELECT id, sweep FROM sweeps ORDER BY created_unix_ms, rowid");
  while (q.step()) {
    v1::Sweep sweep;
    if (!q.parse(1, &sweep)) throw internal_error("jobs database " + path_ + ": sweep " + single_quoted(q.text(0)) + " does not parse");
    out.push_back(std::move(sweep));
  }
  return out;
}

}  // namespace refinery
