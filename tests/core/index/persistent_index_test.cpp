// PersistentIndex and its write-ahead log: what a user of a growing index
// notices. Every acknowledged change survives a restart (with or without a
// checkpoint, and a kill -9 in the middle of a stream of adds), a crash
// mid-append loses only the unacknowledged change, damage inside the log is
// reported by file and byte instead of being served, a checkpoint bounds
// the log, and a full disk refuses a change without losing earlier ones.
#include "core/index/persistent_index.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "core/base/error.h"
#include "core/index/index_log.h"
#include "support/errors.h"
#include "support/fixture.h"
#include "support/index_data.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;
using refinery::testing::expect_error;
using refinery::testing::TempDir;

using testing::make_ids;
using testing::random_vectors;

std::vector<std::string> log_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir + "/log")) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string newest_log(const std::string& dir) { return dir + "/log/" + log_files(dir).back(); }

bool mentions(const std::exception& e, const std::string& what) {
  return std::string(e.what()).find(what) != std::string::npos;
}

// The top hits' ids for each query.
std::vector<std::vector<std::string>> answers(const VectorIndex& index, const std::vector<float>& queries, int k) {
  std::vector<std::vector<std::string>> out;
  for (const auto& hits : index.search(queries.data(), queries.size() / index.dim(), k)) {
    std::vector<std::string> ids;
    for (const auto& h : hits) ids.push_back(h.id + "|" + h.metadata_json);
    out.push_back(ids);
  }
  return out;
}

IndexOptions kind(IndexKind k) {
  IndexOptions o;
  o.kind = k;
  return o;
}

class PersistentIndexKinds : public ::testing::TestWithParam<IndexKind> {};

TEST_P(PersistentIndexKinds, EveryChangeSurvivesAReopenWithoutACheckpoint) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 16;
  auto data = random_vectors(300, dim, 1);
  auto queries = random_vectors(20, dim, 2);
  std::vector<std::vector<std::string>> before;
  size_t size = 0;
  {
    PersistentIndex::initialize(dir, dim, kind(GetParam()));
    auto index = PersistentIndex::open(dir);
    index->add(make_ids(200, "a-"), data.data(), 200, std::vector<std::string>(200, "{\"v\":1}"));
    for (int i = 0; i < 50; ++i) index->add({"s-" + std::to_string(i)}, &data[(200 + i) * dim], 1);
    EXPECT_EQ(index->remove({"a-3", "a-4", "nope"}), 2u);
    index->add({"a-5"}, &data[260 * dim], 1, {"{\"v\":2}"}, /*upsert=*/true);
    index->add({"a-3"}, &data[261 * dim], 1);  // deleted, then added again
    EXPECT_EQ(index->stats().checkpoints, 0u);
    before = answers(*index->index(), queries, 10);
    size = index->index()->size();
  }
  auto reopened = PersistentIndex::open(dir);
  EXPECT_EQ(reopened->stats().replayed_records, 54u);  // 1 + 50 single adds + 1 delete + 2
  EXPECT_EQ(reopened->index()->size(), size);
  EXPECT_FALSE(reopened->index()->contains("a-4"));
  EXPECT_EQ(answers(*reopened->index(), queries, 10), before);
  auto hit = reopened->index()->search(std::vector<float>(&data[260 * dim], &data[261 * dim]), 1)[0];
  EXPECT_EQ(hit.id, "a-5");
  EXPECT_EQ(hit.metadata_json, "{\"v\":2}");
}

INSTANTIATE_TEST_SUITE_P(Kinds, PersistentIndexKinds,
                         ::testing::Values(IndexKind::kFlat, IndexKind::kIvf, IndexKind::kHnsw),
                         [](const auto& info) { return std::string(index_kind_name(info.param)); });

TEST(PersistentIndexTest, ACheckpointDropsTheLogItCoversAndLosesNothing) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 8;
  auto data = random_vectors(40, dim, 3);
  auto queries = random_vectors(5, dim, 4);
  PersistentIndex::initialize(dir, dim, {});
  std::vector<std::vector<std::string>> before;
  {
    auto index = PersistentIndex::open(dir);
    index->add(make_ids(20, "x-"), data.data(), 20);
    const auto first_logs = log_files(dir);
    index->checkpoint();
    EXPECT_EQ(index->stats().log_records, 0u);
    // The segments the snapshot holds are gone; only the new one is left.
    auto logs = log_files(dir);
    ASSERT_EQ(logs.size(), 1u);
    EXPECT_GT(logs[0], first_logs.back());
    index->add(make_ids(20, "y-"), &data[20 * dim], 20);
    index->remove({"x-0"});
    before = answers(*index->index(), queries, 5);
  }
  auto reopened = PersistentIndex::open(dir);
  EXPECT_EQ(reopened->stats().replayed_records, 2u);  // only what came after the checkpoint
  EXPECT_EQ(reopened->index()->size(), 39u);
  EXPECT_EQ(answers(*reopened->index(), queries, 5), before);
}

TEST(PersistentIndexTest, CheckpointsBecomeDueAsTheLogGrows) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 64;
  PersistentIndex::initialize(dir, dim, {});
  PersistentIndexOptions opts;
  opts.checkpoint_min_log_bytes = 64 * 1024;
  opts.checkpoint_log_fraction = 0.5;
  auto index = PersistentIndex::open(dir, opts);
  auto data = random_vectors(400, dim, 5);
  index->add(make_ids(100, "a-"), data.data(), 100);  // ~26 KB logged: not yet
  EXPECT_FALSE(index->checkpoint_due());
  EXPECT_FALSE(index->maintain());
  index->add(make_ids(300, "b-"), &data[100 * dim], 300);  // ~104 KB
  EXPECT_TRUE(index->checkpoint_due());
  EXPECT_TRUE(index->maintain());
  EXPECT_EQ(index->stats().checkpoints, 1u);
  EXPECT_FALSE(index->checkpoint_due());
  EXPECT_GT(index->stats().snapshot_bytes, 400u * dim * 4);
  // Now the log may grow to half the snapshot before the next one.
  index->add({"c"}, data.data(), 1);
  EXPECT_FALSE(index->checkpoint_due());
}

TEST(PersistentIndexTest, ATornLastRecordIsCutOffAndTheRestKept) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 8;
  auto data = random_vectors(3, dim, 6);
  PersistentIndex::initialize(dir, dim, {});
  {
    auto index = PersistentIndex::open(dir);
    index->add({"kept-1"}, data.data(), 1);
    index->add({"kept-2"}, &data[dim], 1);
    index->add({"torn"}, &data[2 * dim], 1);
  }
  // The crash hit while the last record was being written.
  const std::string log = newest_log(dir);
  const auto full = fs::file_size(log);
  fs::resize_file(log, full - 7);
  {
    auto index = PersistentIndex::open(dir);
    EXPECT_NE(index->stats().log_repair.find("cut 60 bytes of an unfinished write off " + log), std::string::npos)
        << index->stats().log_repair;
    EXPECT_EQ(index->index()->size(), 2u);
    EXPECT_TRUE(index->index()->contains("kept-2"));
    EXPECT_FALSE(index->index()->contains("torn"));
    index->add({"torn"}, &data[2 * dim], 1);  // the caller's retry
  }
  // The cut was made on disk: the next start meets a clean log.
  auto index = PersistentIndex::open(dir);
  EXPECT_EQ(index->index()->size(), 3u);
  EXPECT_EQ(index->stats().log_repair, "");
}

TEST(PersistentIndexTest, DamageInsideTheLogIsReportedByFileAndByte) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 8;
  auto data = random_vectors(2, dim, 7);
  PersistentIndex::initialize(dir, dim, {});
  {
    auto index = PersistentIndex::open(dir);
    index->add({"first"}, data.data(), 1);
    index->add({"second"}, &data[dim], 1);
  }
  const std::string log = newest_log(dir);
  std::string bytes = refinery::testing::read_file(log);
  bytes[16 + 16 + 10] ^= 0x40;  // inside the first record's payload
  refinery::testing::write_file(log, bytes);
  auto e = expect_error([&] { PersistentIndex::open(dir); }, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(mentions(e, log)) << e.what();
  EXPECT_TRUE(mentions(e, "record at byte 16")) << e.what();
  EXPECT_TRUE(mentions(e, "checksum")) << e.what();
}

TEST(PersistentIndexTest, AFullDiskRefusesTheChangeAndKeepsTheRest) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 8;
  auto data = random_vectors(500, dim, 8);
  PersistentIndex::initialize(dir, dim, {});
  auto index = PersistentIndex::open(dir);
  index->add(make_ids(200, "old-"), data.data(), 200);  // 6.4 KB of vectors, logged

  std::string add_error, checkpoint_error;
  {
    const testing::FileSizeLimit full_disk(4096);  // writes past 4 KiB now fail
    try {
      index->add({"new-0"}, &data[200 * dim], 1);
    } catch (const Error& e) {
      add_error = e.what();
    }
    try {
      index->checkpoint();  // the snapshot's vectors.f32 does not fit either
    } catch (const Error& e) {
      checkpoint_error = e.what();
    }
  }
  EXPECT_NE(add_error.find(".log"), std::string::npos) << add_error;
  EXPECT_NE(checkpoint_error.find("vectors.f32"), std::string::npos) << checkpoint_error;

  EXPECT_FALSE(index->index()->contains("new-0"));
  EXPECT_EQ(index->index()->size(), 200u);
  index->add(make_ids(200, "new-"), &data[200 * dim], 200);  // fine once the disk is
  index.reset();
  auto reopened = PersistentIndex::open(dir);
  EXPECT_EQ(reopened->index()->size(), 400u);
  EXPECT_TRUE(reopened->index()->contains("old-199"));
  EXPECT_TRUE(reopened->index()->contains("new-199"));
}

TEST(PersistentIndexTest, ConcurrentWritersShareSyncsAndAllLand) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 8, threads = 8, per_thread = 100;
  auto data = random_vectors(threads * per_thread, dim, 9);
  PersistentIndex::initialize(dir, dim, kind(IndexKind::kHnsw));
  {
    auto index = PersistentIndex::open(dir);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          const int item = t * per_thread + i;
          index->add({"t" + std::to_string(item)}, &data[item * dim], 1);
        }
      });
    }
    for (auto& th : pool) th.join();
    EXPECT_EQ(index->index()->size(), size_t(threads * per_thread));
  }
  auto reopened = PersistentIndex::open(dir);
  EXPECT_EQ(reopened->index()->size(), size_t(threads * per_thread));
  for (int item = 0; item < threads * per_thread; item += 37) {
    auto hits = reopened->index()->search(std::vector<float>(&data[item * dim], &data[(item + 1) * dim]), 1);
    EXPECT_EQ(hits[0].id, "t" + std::to_string(item));
  }
}

// A real crash: a child process adds items one at a time and reports each
// acknowledged id through a pipe; it is killed with SIGKILL mid-stream.
// Every acknowledged item must be there after the restart.
TEST(PersistentIndexTest, EveryAcknowledgedAddSurvivesAKill) {
  TempDir tmp;
  const std::string dir = tmp / "idx";
  const int dim = 32;
  PersistentIndex::initialize(dir, dim, {});
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    auto index = PersistentIndex::open(dir);
    auto data = random_vectors(1, dim, 10);
    for (uint32_t i = 0;; ++i) {
      data[0] = static_cast<float>(i % 97) + 1.0f;
      index->add({"k" + std::to_string(i)}, data.data(), 1);
      if (write(fds[1], &i, sizeof i) != sizeof i) _exit(1);
    }
  }
  close(fds[1]);
  uint32_t last = 0;
  int got = 0;
  while (got < 300 && read(fds[0], &last, sizeof last) == sizeof last) ++got;
  kill(child, SIGKILL);
  uint32_t more;
  while (read(fds[0], &more, sizeof more) == sizeof more) last = more;  // acknowledged before the kill
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_GE(got, 300);

  auto index = PersistentIndex::open(dir);
  for (uint32_t i = 0; i <= last; ++i) ASSERT_TRUE(index->index()->contains("k" + std::to_string(i))) << i;
  // At most the one add in flight at the kill is there unacknowledged.
  EXPECT_LE(index->index()->size(), size_t(last) + 2);
}

TEST(IndexLogTest, SegmentsBelowTheSnapshotAreDeletedAndAGapIsRefused) {
  TempDir tmp;
  const std::string dir = tmp / "log";
  std::vector<float> v(4, 1.0f);
  {
    IndexLog log(dir, 0, [](const IndexLogRecord&) {});
    log.sync(log.append_add({"a"}, v.data(), 1, 4, {}, false));
    log.rotate();
    log.sync(log.append_add({"b"}, v.data(), 1, 4, {"{}"}, true));
    log.rotate();
    log.sync(log.append_remove({"a"}));
  }
  std::vector<IndexLogRecord> seen;
  {
    IndexLog log(dir, 1, [&](const IndexLogRecord& r) { seen.push_back(r); });
    EXPECT_FALSE(fs::exists(log.segment_path(0)));
    EXPECT_EQ(log.stats().first_segment, 1u);
    EXPECT_EQ(log.stats().segment, 3u);  // a new segment for appends
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].op, IndexLogRecord::Op::kAdd);
  EXPECT_TRUE(seen[0].upsert);
  EXPECT_EQ(seen[0].ids, std::vector<std::string>{"b"});
  EXPECT_EQ(seen[0].metadata, std::vector<std::string>{"{}"});
  EXPECT_EQ(seen[0].vectors, v);
  EXPECT_EQ(seen[1].op, IndexLogRecord::Op::kRemove);
  EXPECT_EQ(seen[1].ids, std::vector<std::string>{"a"});

  fs::remove(dir + "/00000000000000000002.log");
  auto e = expect_error([&] { IndexLog(dir, 1, [](const IndexLogRecord&) {}); }, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(mentions(e, "segment 2 is missing")) << e.what();
}

}  // namespace
}  // namespace refinery
