// JobStore: refine jobs, their events and checkpoints in a real SQLite file.
// What a user notices: a submitted job comes back whole after a restart or a
// kill -9, a retried submit does not start a second job, a watcher sees
// every event once and in order (no gaps, even with several writers), a job's
// state never runs ahead of its event, and a file the server cannot use is
// refused with its path in the message.
#include "server/store/job_store.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <set>
#include <thread>

#include "core/base/error.h"
#include "support/fixture.h"
#include "support/errors.h"

namespace refinery {
namespace {

using refinery::testing::TempDir;
using refinery::v1::Job;
using refinery::v1::JobEvent;
using refinery::v1::JobState;

using testing::expect_error;

bool same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

Job make_job(const std::string& id, JobState state = refinery::v1::JOB_STATE_QUEUED, int64_t created = 1000,
             const std::string& request_id = "") {
  Job job;
  job.set_id(id);
  job.set_state(state);
  job.set_created_unix_ms(created);
  job.set_client_request_id(request_id);
  job.mutable_spec()->set_base_model("clip-tiny@1");
  return job;
}

// A job with every field of Job and JobSpec set to a distinct value.
Job full_job() {
  Job job;
  job.set_id("job-full");
  job.set_state(refinery::v1::JOB_STATE_RUNNING);
  auto* s = job.mutable_spec();
  s->set_base_model("clip-tiny@2");
  s->set_data("coco:/data/ann.json:/data/images");
  s->set_method("hycd-align");
  s->set_name("tiny-refined");
  s->set_epochs(3);
  s->set_max_steps(1234);
  s->set_batch_size(64);
  s->set_lr(1e-5);
  s->set_weight_decay(0.2);
  s->set_alpha(0.7);
  s->set_lambda_rafa(0.3);
  s->set_lambda_hycd(0.4);
  s->set_temperature(0.07);
  s->set_rafa_mu(0.1);
  s->set_rafa_sigma(1.5);
  s->set_rafa_prior("uniform");
  s->set_schedule("cosine");
  s->set_warmup_steps(50);
  s->set_grad_clip(1.0);
  s->set_seed(18446744073709551615ull);
  s->set_val_fraction(0.05);
  s->set_eval_every(100);
  s->set_checkpoint_every(200);
  s->set_precision("bf16");
  s->set_data_workers(4);
  s->set_keep_checkpoints(5);
  (*s->mutable_extra())["hycd.curvature"] = "1.0";
  (*s->mutable_extra())["rafa.warmup"] = "10";
  job.set_step(321);
  job.set_total_steps(1234);
  job.set_epoch(2);
  job.set_created_unix_ms(1700000000000);
  job.set_started_unix_ms(1700000001000);
  job.set_finished_unix_ms(1700000002000);
  job.set_error("none yet");
  job.set_result_model("tiny-refined@1");
  (*job.mutable_metrics())["i2t_r1"] = 0.25;
  (*job.mutable_metrics())["t2i_r1"] = 0.125;
  job.set_client_request_id("req-full");
  return job;
}

JobEvent step_event(int64_t step, double loss = 1.0) {
  JobEvent event;
  event.mutable_step()->set_step(step);
  event.mutable_step()->set_loss(loss);
  event.mutable_step()->set_images_skipped(step / 10);
  return event;
}

std::vector<int64_t> seqs(const std::vector<JobEvent>& events) {
  std::vector<int64_t> out;
  for (const auto& e : events) out.push_back(e.seq());
  return out;
}

std::vector<std::string> ids(const std::vector<Job>& jobs) {
  std::vector<std::string> out;
  for (const auto& j : jobs) out.push_back(j.id());
  return out;
}

void raw_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST(JobStore, InsertGetUpdateRoundTripEveryField) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  EXPECT_EQ(store.path(), dir / "jobs.db");
  Job job = full_job();
  job.set_last_seq(77);  // the store owns last_seq: a new job has no events
  bool inserted = false;
  Job stored = store.insert_job(job, &inserted);
  EXPECT_TRUE(inserted);
  EXPECT_EQ(stored.last_seq(), 0);

  auto got = store.get_job("job-full");
  ASSERT_TRUE(got.has_value());
  Job expected = full_job();
  EXPECT_TRUE(same(*got, expected)) << got->DebugString();
  EXPECT_EQ(got->spec().seed(), 18446744073709551615ull);
  EXPECT_EQ(got->spec().extra().at("rafa.warmup"), "10");
  EXPECT_EQ(got->metrics().at("t2i_r1"), 0.125);

  Job changed = *got;
  changed.set_state(refinery::v1::JOB_STATE_SUCCEEDED);
  changed.set_step(1234);
  changed.set_finished_unix_ms(1700000009000);
  (*changed.mutable_metrics())["i2t_r1"] = 0.5;
  changed.set_last_seq(999);  // ignored: last_seq moves only with events
  store.update_job(changed);
  got = store.get_job("job-full");
  ASSERT_TRUE(got.has_value());
  changed.set_last_seq(0);
  EXPECT_TRUE(same(*got, changed)) << got->DebugString();
  EXPECT_EQ(got->state(), refinery::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(got->metrics().at("i2t_r1"), 0.5);

  // The state column follows updates: the job is listed under its new state only.
  EXPECT_EQ(ids(store.list_jobs({refinery::v1::JOB_STATE_SUCCEEDED})), std::vector<std::string>{"job-full"});
  EXPECT_TRUE(store.list_jobs({refinery::v1::JOB_STATE_RUNNING}).empty());

  // "Unset" (take the default) and an explicit 0 stay apart.
  Job zero_alpha = make_job("zero-alpha");
  zero_alpha.mutable_spec()->set_alpha(0.0);
  store.insert_job(zero_alpha);
  store.insert_job(make_job("no-alpha"));
  EXPECT_TRUE(store.get_job("zero-alpha")->spec().has_alpha());
  EXPECT_FALSE(store.get_job("no-alpha")->spec().has_alpha());
}

TEST(JobStore, ListIsOldestFirstAndFiltersByState) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("a", refinery::v1::JOB_STATE_QUEUED, 3000));
  store.insert_job(make_job("b", refinery::v1::JOB_STATE_RUNNING, 1000));
  store.insert_job(make_job("c", refinery::v1::JOB_STATE_QUEUED, 2000));
  store.insert_job(make_job("d", refinery::v1::JOB_STATE_SUCCEEDED, 2000));  // same time as c, inserted after it
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(store.list_jobs()), (V{"b", "c", "d", "a"}));
  EXPECT_EQ(ids(store.list_jobs({refinery::v1::JOB_STATE_QUEUED})), (V{"c", "a"}));
  EXPECT_EQ(ids(store.list_jobs({refinery::v1::JOB_STATE_QUEUED, refinery::v1::JOB_STATE_RUNNING,
                                 refinery::v1::JOB_STATE_QUEUED})),
            (V{"b", "c", "a"}));
  EXPECT_EQ(ids(store.list_jobs({refinery::v1::JOB_STATE_SUCCEEDED, refinery::v1::JOB_STATE_QUEUED})),
            (V{"c", "d", "a"}));
  EXPECT_TRUE(store.list_jobs({refinery::v1::JOB_STATE_CANCELLED}).empty());
}

TEST(JobStore, RepeatedRequestIdReturnsTheFirstJob) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  bool inserted = false;
  Job first = store.insert_job(make_job("j1", refinery::v1::JOB_STATE_QUEUED, 1000, "req-1"), &inserted);
  EXPECT_TRUE(inserted);
  store.append_event("j1", step_event(1));
  Job second = store.insert_job(make_job("j2", refinery::v1::JOB_STATE_QUEUED, 2000, "req-1"), &inserted);
  EXPECT_FALSE(inserted);
  EXPECT_EQ(second.id(), "j1");
  EXPECT_EQ(second.created_unix_ms(), 1000);
  EXPECT_EQ(second.last_seq(), 1);
  EXPECT_FALSE(store.get_job("j2").has_value());
  EXPECT_EQ(store.list_jobs().size(), 1u);
  ASSERT_TRUE(store.find_by_request_id("req-1").has_value());
  EXPECT_EQ(store.find_by_request_id("req-1")->id(), "j1");
  EXPECT_FALSE(store.find_by_request_id("req-2").has_value());
  EXPECT_FALSE(store.find_by_request_id("").has_value());

  // No request id: every submit is a new job.
  store.insert_job(make_job("j3"), &inserted);
  EXPECT_TRUE(inserted);
  store.insert_job(make_job("j4"), &inserted);
  EXPECT_TRUE(inserted);
  EXPECT_EQ(store.list_jobs().size(), 3u);

  // A reused job id is an error, not a silent overwrite.
  Error e = expect_error([&] { store.insert_job(make_job("j3", refinery::v1::JOB_STATE_RUNNING)); },
                         ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("'j3'"), std::string::npos) << e.what();
  EXPECT_EQ(store.get_job("j3")->state(), refinery::v1::JOB_STATE_QUEUED);
}

// Concurrent submits with one request id: through one JobStore (threads) and
// through two JobStores on one file (as two processes would).
TEST(JobStore, ConcurrentSubmitsWithOneRequestIdMakeOneJob) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  JobStore other(dir / "jobs.db");
  constexpr int kThreads = 8;
  for (int round = 0; round < 5; ++round) {
    const std::string request = "req-" + std::to_string(round);
    std::atomic<int> ready{0};
    std::vector<Job> results(kThreads);
    std::vector<int> inserted(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        JobStore& s = (t % 2 == 0) ? store : other;
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        bool ins = false;
        results[t] = s.insert_job(make_job(request + "-job-" + std::to_string(t), refinery::v1::JOB_STATE_QUEUED, 1000,
                                           request),
                                  &ins);
        inserted[t] = ins ? 1 : 0;
      });
    }
    for (auto& th : threads) th.join();
    int winners = 0;
    for (int t = 0; t < kThreads; ++t) winners += inserted[t];
    EXPECT_EQ(winners, 1) << request;
    for (int t = 1; t < kThreads; ++t) EXPECT_EQ(results[t].id(), results[0].id()) << request;
  }
  EXPECT_EQ(store.list_jobs().size(), 5u);
  EXPECT_EQ(other.list_jobs().size(), 5u);
}

TEST(JobStore, AppendAssignsConsecutiveSeqsAndUpdatesLastSeq) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("j"));
  store.insert_job(make_job("k"));
  const int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  JobEvent e1 = store.append_event("j", step_event(10, 2.5));
  EXPECT_EQ(e1.seq(), 1);
  EXPECT_EQ(e1.job_id(), "j");
  EXPECT_GE(e1.unix_ms(), before);
  JobEvent with_time = step_event(20);
  with_time.set_unix_ms(42);
  with_time.set_seq(1000);      // ignored: the store numbers events
  with_time.set_job_id("zzz");  // ignored: the event belongs to "j"
  JobEvent e2 = store.append_event("j", with_time);
  EXPECT_EQ(e2.seq(), 2);
  EXPECT_EQ(e2.unix_ms(), 42);
  EXPECT_EQ(e2.job_id(), "j");
  EXPECT_EQ(store.append_event("k", step_event(1)).seq(), 1);  // numbered per job
  EXPECT_EQ(store.append_event("j", step_event(30)).seq(), 3);
  EXPECT_EQ(store.get_job("j")->last_seq(), 3);
  EXPECT_EQ(store.get_job("k")->last_seq(), 1);

  auto events = store.events("j", 0);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(seqs(events), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(events[0].step().step(), 10);
  EXPECT_EQ(events[0].step().loss(), 2.5);
  EXPECT_EQ(events[0].step().images_skipped(), 1);
  EXPECT_EQ(events[0].unix_ms(), e1.unix_ms());
  EXPECT_EQ(events[1].unix_ms(), 42);
  EXPECT_EQ(events[2].step().step(), 30);
  for (const auto& e : events) EXPECT_EQ(e.job_id(), "j");

  // An update_job without events keeps last_seq.
  Job j = *store.get_job("j");
  j.set_last_seq(0);
  store.update_job(j);
  EXPECT_EQ(store.get_job("j")->last_seq(), 3);
  EXPECT_EQ(store.append_event("j", step_event(40)).seq(), 4);
}

TEST(JobStore, ConcurrentAppendsLeaveNoGaps) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  JobStore other(dir / "jobs.db");
  store.insert_job(make_job("j"));
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      JobStore& s = (t % 2 == 0) ? store : other;
      // Each thread tags its events: step = thread * 1000 + i.
      for (int i = 0; i < kEach; ++i) s.append_event("j", step_event(t * 1000 + i));
    });
  }
  for (auto& th : threads) th.join();
  auto events = store.events("j", 1);
  ASSERT_EQ(events.size(), size_t{kThreads * kEach});
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq(), int64_t(i + 1));
  // Every event is there once, and each thread's events keep its order.
  std::vector<int> next(kThreads, 0);
  for (const auto& e : events) {
    int t = static_cast<int>(e.step().step() / 1000), i = static_cast<int>(e.step().step() % 1000);
    ASSERT_LT(t, kThreads);
    EXPECT_EQ(i, next[t]) << "thread " << t;
    next[t] = i + 1;
  }
  EXPECT_EQ(store.get_job("j")->last_seq(), kThreads * kEach);
}

TEST(JobStore, AppendWithJobUpdateIsAtomic) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("j"));
  Job running = *store.get_job("j");
  running.set_state(refinery::v1::JOB_STATE_RUNNING);
  running.set_started_unix_ms(5000);
  running.set_last_seq(12345);  // the store sets it to the event's seq
  JobEvent state;
  state.mutable_state()->set_state(refinery::v1::JOB_STATE_RUNNING);
  JobEvent stored = store.append_event("j", state, &running);
  EXPECT_EQ(stored.seq(), 1);
  Job got = *store.get_job("j");
  EXPECT_EQ(got.state(), refinery::v1::JOB_STATE_RUNNING);
  EXPECT_EQ(got.started_unix_ms(), 5000);
  EXPECT_EQ(got.last_seq(), 1);
  EXPECT_EQ(ids(store.list_jobs({refinery::v1::JOB_STATE_RUNNING})), std::vector<std::string>{"j"});

  // An update for another job is refused and nothing is written.
  Job wrong = make_job("other", refinery::v1::JOB_STATE_FAILED);
  expect_error([&] { store.append_event("j", step_event(2), &wrong); }, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store.get_job("j")->last_seq(), 1);
  EXPECT_EQ(store.events("j", 0).size(), 1u);

  // A failing write rolls the whole append back: the update's request id
  // collides with another job's, so neither the event nor the state lands.
  store.insert_job(make_job("x", refinery::v1::JOB_STATE_QUEUED, 1000, "req-x"));
  Job colliding = got;
  colliding.set_state(refinery::v1::JOB_STATE_FAILED);
  colliding.set_client_request_id("req-x");
  expect_error([&] { store.append_event("j", step_event(2), &colliding); }, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store.get_job("j")->state(), refinery::v1::JOB_STATE_RUNNING);
  EXPECT_EQ(store.get_job("j")->last_seq(), 1);
  EXPECT_EQ(store.events("j", 0).size(), 1u);
  EXPECT_EQ(store.append_event("j", step_event(2)).seq(), 2);

  // A reader on another connection never sees the job ahead of its event:
  // the event at the job's last_seq always carries the job's step.
  Job progress = *store.get_job("j");
  progress.set_step(99);
  store.append_event("j", step_event(99), &progress);
  std::atomic<bool> done{false};
  std::atomic<int> checks{0};
  JobStore reader_store(dir / "jobs.db");
  std::thread reader([&] {
    while (!done.load()) {
      Job j = *reader_store.get_job("j");
      auto at = reader_store.events("j", j.last_seq(), 1);
      ASSERT_EQ(at.size(), 1u) << "no event at last_seq " << j.last_seq();
      EXPECT_EQ(at[0].step().step(), j.step()) << "at seq " << j.last_seq();
      checks.fetch_add(1);
    }
  });
  while (checks.load() == 0) std::this_thread::yield();
  for (int step = 100; step < 300; ++step) {
    progress.set_step(step);
    store.append_event("j", step_event(step), &progress);
  }
  done = true;
  reader.join();
  EXPECT_GT(checks.load(), 0);
  EXPECT_EQ(store.get_job("j")->step(), 299);
}

TEST(JobStore, EventsFromSeqWithLimit) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("j"));
  for (int i = 0; i < 10; ++i) store.append_event("j", step_event(i));
  using V = std::vector<int64_t>;
  EXPECT_EQ(seqs(store.events("j", 0)), (V{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(seqs(store.events("j", 1)), (V{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(seqs(store.events("j", 8)), (V{8, 9, 10}));
  EXPECT_EQ(seqs(store.events("j", 4, 3)), (V{4, 5, 6}));
  EXPECT_EQ(seqs(store.events("j", 9, 5)), (V{9, 10}));
  EXPECT_TRUE(store.events("j", 11).empty());
  EXPECT_EQ(store.events("j", 3, 1)[0].step().step(), 2);
  expect_error([&] { store.events("j", 1, -1); }, ErrorCode::kInvalidArgument);

  store.insert_job(make_job("empty"));
  EXPECT_TRUE(store.events("empty", 0).empty());
}

TEST(JobStore, DataSurvivesReopen) {
  TempDir dir;
  const std::string path = dir / "jobs.db";
  {
    JobStore store(path);
    store.insert_job(full_job());
    store.insert_job(make_job("q", refinery::v1::JOB_STATE_QUEUED, 1800000000000, "req-q"));
    store.append_event("job-full", step_event(1));
    store.append_event("job-full", step_event(2));
    store.add_checkpoint("job-full", CheckpointRecord{200, "/ckpt/200.safetensors", 111});
  }
  JobStore store(path);
  Job got = *store.get_job("job-full");
  Job expected = full_job();
  expected.set_last_seq(2);
  EXPECT_TRUE(same(got, expected)) << got.DebugString();
  EXPECT_EQ(ids(store.list_jobs()), (std::vector<std::string>{"job-full", "q"}));
  EXPECT_EQ(seqs(store.events("job-full", 0)), (std::vector<int64_t>{1, 2}));
  auto cps = store.checkpoints("job-full");
  ASSERT_EQ(cps.size(), 1u);
  EXPECT_EQ(cps[0].path, "/ckpt/200.safetensors");
  EXPECT_EQ(store.append_event("job-full", step_event(3)).seq(), 3);  // numbering continues
  bool inserted = true;
  EXPECT_EQ(store.insert_job(make_job("q2", refinery::v1::JOB_STATE_QUEUED, 6000, "req-q"), &inserted).id(), "q");
  EXPECT_FALSE(inserted);
}

// Every append that returned before a kill -9 is there after it.
TEST(JobStore, AcknowledgedAppendsSurviveKill9) {
  TempDir dir;
  const std::string path = dir / "jobs.db";
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    try {
      JobStore store(path);
      store.insert_job(make_job("j"));
      Job job = *store.get_job("j");
      for (int64_t i = 1; i <= 1000000; ++i) {
        job.set_step(i);
        int64_t seq = store.append_event("j", step_event(i), &job).seq();
        if (write(fds[1], &seq, sizeof seq) != sizeof seq) _exit(3);
      }
    } catch (...) {
      _exit(2);
    }
    _exit(0);
  }
  close(fds[1]);
  int64_t acked = 0, seq = 0;
  while (acked < 300 && read(fds[0], &seq, sizeof seq) == sizeof seq) acked = seq;
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended before the kill, status " << status;
  ASSERT_EQ(acked, 300);

  JobStore store(path);
  Job job = *store.get_job("j");
  auto events = store.events("j", 0);
  EXPECT_GE(job.last_seq(), acked);
  ASSERT_EQ(events.size(), static_cast<size_t>(job.last_seq()));
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq(), int64_t(i + 1));
    EXPECT_EQ(events[i].step().step(), int64_t(i + 1));
  }
  EXPECT_EQ(job.step(), job.last_seq());
}

TEST(JobStore, FileThatIsNotADatabaseIsRefusedByPath) {
  TempDir dir;
  const std::string path = dir / "jobs.db";
  std::string text;
  for (int i = 0; i < 64; ++i) text += "this is a text file, not a database\n";
  refinery::testing::write_file(path, text);
  Error e = expect_error([&] { JobStore store(path); }, ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("not a database"), std::string::npos) << e.what();
  EXPECT_EQ(refinery::testing::read_file(path), text);  // left as it was
}

TEST(JobStore, UnopenablePathIsRefusedByPath) {
  TempDir dir;
  const std::string path = dir / "missing-dir/jobs.db";
  Error e = expect_error([&] { JobStore store(path); }, ErrorCode::kInternal);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
}

TEST(JobStore, NewerSchemaVersionIsRefused) {
  TempDir dir;
  const std::string path = dir / "jobs.db";
  { JobStore store(path); }
  raw_sql(path, "PRAGMA user_version = " + std::to_string(JobStore::kSchemaVersion + 1));
  Error e = expect_error([&] { JobStore store(path); }, ErrorCode::kFailedPrecondition);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("schema version " + std::to_string(JobStore::kSchemaVersion + 1)),
            std::string::npos)
      << e.what();
  // The current version opens.
  raw_sql(path, "PRAGMA user_version = " + std::to_string(JobStore::kSchemaVersion));
  JobStore store(path);
  EXPECT_TRUE(store.list_jobs().empty());
}

// What version 3 added (step columns); dropped to make an older file.
constexpr const char* kVersion3Columns =
    "ALTER TABLE job_events DROP COLUMN step; ALTER TABLE jobs DROP COLUMN step_events; "
    "ALTER TABLE jobs DROP COLUMN step_stride; ";

TEST(JobStore, AVersionOneFileIsUpgradedWithItsJobs) {
  TempDir dir;
  const std::string path = dir / "jobs.db";
  {
    JobStore store(path);
    store.insert_job(make_job("old"));
    store.append_event("old", step_event(1));
  }
  // What refineryd before sweeps left: no sweeps table, version 1.
  raw_sql(path, std::string(kVersion3Columns) + "DROP TABLE sweeps; PRAGMA user_version = 1");
  JobStore store(path);
  ASSERT_EQ(store.list_jobs().size(), 1u);
  EXPECT_EQ(store.events("old", 1).size(), 1u);
  EXPECT_TRUE(store.list_sweeps().empty());
  refinery::v1::Sweep sweep;
  sweep.set_id("sweep-1");
  sweep.set_created_unix_ms(5);
  store.insert_sweep(sweep, {});
  EXPECT_EQ(store.list_sweeps().size(), 1u);
}

// A long job keeps a bounded number of step events: the newest tenth whole,
// the older ones at an even stride from the start, and every other event.
TEST(JobStore, ALongJobsStepEventsAreThinnedEvenlyAndOtherEventsKept) {
  TempDir dir;
  JobStoreOptions options;
  options.max_step_events = 100;
  JobStore store(dir / "jobs.db", options);
  store.insert_job(make_job("long"));
  constexpr int64_t kSteps = 5000;
  int64_t evals = 0;
  for (int64_t step = 1; step <= kSteps; ++step) {
    store.append_event("long", step_event(step, 1.0 / step));
    if (step % 250 == 0) {
      JobEvent eval;
      eval.mutable_eval()->set_step(step);
      store.append_event("long", eval);
      ++evals;
    }
  }
  const auto events = store.events("long", 0);
  std::vector<int64_t> steps;
  int64_t eval_events = 0, last_seq = 0;
  for (const auto& e : events) {
    EXPECT_GT(e.seq(), last_seq);  // in order, each once
    last_seq = e.seq();
    if (e.has_step()) {
      steps.push_back(e.step().step());
      EXPECT_DOUBLE_EQ(e.step().loss(), 1.0 / e.step().step());  // the event itself is intact
    }
    if (e.has_eval()) ++eval_events;
  }
  EXPECT_EQ(eval_events, evals);
  EXPECT_EQ(last_seq, kSteps + evals);  // the newest event is never thinned
  EXPECT_EQ(store.get_job("long")->last_seq(), kSteps + evals);
  ASSERT_LE(steps.size(), 100u);
  ASSERT_GE(steps.size(), 50u);
  // The newest 10 are consecutive steps up to the last.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(steps[steps.size() - 1 - i], kSteps - i);
  // The older ones: one stride from the first kept step on, no holes.
  const int64_t stride = steps[1] - steps[0];
  EXPECT_GT(stride, 1);
  EXPECT_LE(steps[0], stride);
  size_t i = 1;
  while (i + 1 < steps.size() - 10 && steps[i + 1] - steps[i] == stride) ++i;
  EXPECT_GE(steps[i], kSteps - 10 - 2 * stride) << "the even part stops early at step " << steps[i];
  // Replay from a thinned seq starts at the next kept event.
  const auto tail = store.events("long", events[1].seq() - 1);
  ASSERT_FALSE(tail.empty());
  EXPECT_GE(tail[0].seq(), events[0].seq());
}

TEST(JobStore, AVersionTwoFileIsUpgradedAndItsEventsStayWhole) {
  TempDir dir;
  const std::string path = dir / "jobs.db";
  {
    JobStore store(path);
    store.insert_job(make_job("old"));
    for (int step = 1; step <= 30; ++step) store.append_event("old", step_event(step));
  }
  raw_sql(path, std::string(kVersion3Columns) + "PRAGMA user_version = 2");
  JobStoreOptions options;
  options.max_step_events = 10;
  JobStore store(path, options);
  EXPECT_EQ(store.events("old", 0).size(), 30u);  // stored before version 3: never thinned
  for (int step = 31; step <= 60; ++step) store.append_event("old", step_event(step));
  const auto events = store.events("old", 0);
  EXPECT_LE(events.size(), 30u + 10u);
  EXPECT_EQ(events[29].step().step(), 30);
  EXPECT_EQ(events.back().step().step(), 60);
  expect_error([&] { JobStore(dir / "other.db", JobStoreOptions{5}); }, ErrorCode::kInvalidArgument);
}

TEST(JobStore, ASweepIsStoredWithAllItsJobsOrNotAtAll) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("taken"));
  refinery::v1::Sweep sweep;
  sweep.set_id("sweep-1");
  sweep.set_client_request_id("req-s");
  sweep.set_created_unix_ms(5);
  refinery::v1::JobEvent queued;
  queued.mutable_state()->set_state(refinery::v1::JOB_STATE_QUEUED);
  // The second job's id exists: nothing of the sweep is stored.
  expect_error([&] { store.insert_sweep(sweep, {{make_job("a"), queued}, {make_job("taken"), queued}}); },
               ErrorCode::kInvalidArgument);
  EXPECT_EQ(store.list_jobs().size(), 1u);
  EXPECT_FALSE(store.get_job("a").has_value());
  EXPECT_TRUE(store.list_sweeps().empty());
  // Stored: the jobs with their first event, the sweep once per request id.
  bool inserted = false;
  store.insert_sweep(sweep, {{make_job("a"), queued}, {make_job("b"), queued}}, &inserted);
  EXPECT_TRUE(inserted);
  EXPECT_EQ(store.get_job("a")->last_seq(), 1);
  EXPECT_EQ(store.events("b", 1).size(), 1u);
  refinery::v1::Sweep again = sweep;
  again.set_id("sweep-2");
  EXPECT_EQ(store.insert_sweep(again, {{make_job("c"), queued}}, &inserted).id(), "sweep-1");
  EXPECT_FALSE(inserted);
  EXPECT_FALSE(store.get_job("c").has_value());
  ASSERT_TRUE(store.get_sweep("sweep-1").has_value());
  EXPECT_FALSE(store.get_sweep("sweep-2").has_value());
}

TEST(JobStore, DeleteRemovesEventsAndCheckpoints) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("j", refinery::v1::JOB_STATE_SUCCEEDED, 1000, "req-j"));
  store.insert_job(make_job("keep"));
  for (int i = 0; i < 5; ++i) store.append_event("j", step_event(i));
  store.append_event("keep", step_event(0));
  store.add_checkpoint("j", CheckpointRecord{100, "/c/100", 1});
  store.add_checkpoint("keep", CheckpointRecord{100, "/k/100", 1});

  store.delete_job("j");
  EXPECT_FALSE(store.get_job("j").has_value());
  EXPECT_EQ(ids(store.list_jobs()), std::vector<std::string>{"keep"});
  expect_error([&] { store.events("j", 0); }, ErrorCode::kNotFound);
  expect_error([&] { store.checkpoints("j"); }, ErrorCode::kNotFound);

  // A new job under the same id and request id starts clean.
  bool inserted = false;
  store.insert_job(make_job("j", refinery::v1::JOB_STATE_QUEUED, 2000, "req-j"), &inserted);
  EXPECT_TRUE(inserted);
  EXPECT_TRUE(store.events("j", 0).empty());
  EXPECT_TRUE(store.checkpoints("j").empty());
  EXPECT_EQ(store.append_event("j", step_event(0)).seq(), 1);

  // The other job is untouched.
  EXPECT_EQ(store.events("keep", 0).size(), 1u);
  EXPECT_EQ(store.checkpoints("keep").size(), 1u);
}

TEST(JobStore, CheckpointsAddListRemove) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("j"));
  store.insert_job(make_job("k"));
  EXPECT_TRUE(store.checkpoints("j").empty());
  store.add_checkpoint("j", CheckpointRecord{200, "/c/200", 2000});
  store.add_checkpoint("j", CheckpointRecord{100, "/c/100", 1000});
  store.add_checkpoint("j", CheckpointRecord{300, "/c/300", 3000});
  store.add_checkpoint("k", CheckpointRecord{100, "/k/100", 1500});
  auto cps = store.checkpoints("j");
  ASSERT_EQ(cps.size(), 3u);
  EXPECT_EQ(cps[0].step, 100);
  EXPECT_EQ(cps[0].path, "/c/100");
  EXPECT_EQ(cps[0].created_unix_ms, 1000);
  EXPECT_EQ(cps[1].step, 200);
  EXPECT_EQ(cps[2].step, 300);
  EXPECT_EQ(cps[2].path, "/c/300");

  // The same step again replaces its record.
  store.add_checkpoint("j", CheckpointRecord{200, "/c/200-again", 2500});
  cps = store.checkpoints("j");
  ASSERT_EQ(cps.size(), 3u);
  EXPECT_EQ(cps[1].path, "/c/200-again");
  EXPECT_EQ(cps[1].created_unix_ms, 2500);

  store.remove_checkpoint("j", 200);
  store.remove_checkpoint("j", 12345);  // no such step: nothing happens
  cps = store.checkpoints("j");
  ASSERT_EQ(cps.size(), 2u);
  EXPECT_EQ(cps[0].step, 100);
  EXPECT_EQ(cps[1].step, 300);
  ASSERT_EQ(store.checkpoints("k").size(), 1u);
  EXPECT_EQ(store.checkpoints("k")[0].path, "/k/100");
}

TEST(JobStore, UnknownIdsAreNotFound) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  EXPECT_FALSE(store.get_job("ghost").has_value());
  std::vector<std::function<void()>> calls = {
      [&] { store.update_job(make_job("ghost")); },
      [&] { store.append_event("ghost", step_event(1)); },
      [&] { store.events("ghost", 0); },
      [&] { store.add_checkpoint("ghost", CheckpointRecord{1, "/x", 1}); },
      [&] { store.checkpoints("ghost"); },
      [&] { store.remove_checkpoint("ghost", 1); },
      [&] { store.delete_job("ghost"); },
  };
  for (const auto& call : calls) {
    Error e = expect_error(call, ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("'ghost'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(store.list_jobs().empty());
  expect_error([&] { store.insert_job(make_job("")); }, ErrorCode::kInvalidArgument);
}

// Prints the append rate (one event per training step); no assertion on it.
TEST(JobStore, AppendRate) {
  TempDir dir;
  JobStore store(dir / "jobs.db");
  store.insert_job(make_job("j"));
  Job job = *store.get_job("j");
  constexpr int kAppends = 2000;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kAppends; ++i) store.append_event("j", step_event(i));
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < kAppends; ++i) {
    job.set_step(i);
    store.append_event("j", step_event(i), &job);
  }
  auto t2 = std::chrono::steady_clock::now();
  auto rate = [](std::chrono::steady_clock::duration d) {
    return kAppends / std::chrono::duration<double>(d).count();
  };
  std::printf("[ rate     ] append_event: %.0f/s; with job_update: %.0f/s\n", rate(t1 - t0), rate(t2 - t1));
  EXPECT_EQ(store.get_job("j")->last_seq(), 2 * kAppends);
}

}  // namespace
}  // namespace refinery
