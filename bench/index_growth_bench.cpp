// refinery-bench-index-growth: how an index that grows one item at a time
// behaves, through the same PersistentIndex (snapshot + write-ahead log) the
// server uses, on a real folder:
//   1. bulk load --n items in chunks (IVF: cells trained by the upkeep, as the
//      server's background thread does), then a checkpoint;
//   2. search latency and recall@k (IVF: against an exhaustive probe);
//   3. --writers threads add single new items for --seconds, with upkeep
//      running: items/s and the latency of each acknowledged add;
//   4. search latency and recall again;
//   5. restart: reopen the folder (snapshot + log replay), then checkpoint
//      and reopen again.
//
//   refinery-bench-index-growth --n 1000000 --dim 512 --kind ivf --dir /tmp/growth [--json]

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/index/persistent_index.h"

namespace {

using refinery::IndexKind;
using refinery::IndexOptions;
using refinery::PersistentIndex;
using refinery::SearchParams;
using refinery::VectorIndex;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  size_t n = 1000000;
  int dim = 512;
  std::string kind = "ivf";
  int nlist = 1024;
  size_t clusters = 1000;
  size_t chunk = 50000;
  int writers = 8;
  double seconds = 20;
  size_t queries = 200;
  int k = 10;
  std::string dir;
  bool keep = false;
  std::string reopen;
  uint64_t seed = 42;
  bool json = false;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A restart is a new process: it allocates (and faults in) fresh memory,
// where an in-process reopen would reuse the freed heap of the old index.
// Runs this program with --reopen DIR and returns what it printed.
nlohmann::json reopen_in_new_process(const std::string& dir) {
  int fds[2];
  if (pipe(fds) != 0) throw refinery::internal_error("pipe failed");
  const pid_t child = fork();
  if (child == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    execl("/proc/self/exe", "refinery-bench-index-growth", "--reopen", dir.c_str(), "--json", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t r; (r = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(r));
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw refinery::internal_error("reopening " + dir + " failed");
  return nlohmann::json::parse(text);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * v.size())) - 1)];
}

// Items around shared random centres: a stand-in for embeddings.
class Generator {
 public:
  Generator(const std::vector<float>& centres, int dim, uint64_t seed) : centres_(centres), dim_(dim), rng_(seed) {}
  void fill(float* out, size_t n) {
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<size_t> pick(0, centres_.size() / dim_ - 1);
    for (size_t i = 0; i < n; ++i) {
      const float* c = &centres_[pick(rng_) * dim_];
      for (int j = 0; j < dim_; ++j) out[i * dim_ + j] = c[j] + 0.5f * normal(rng_);
    }
  }

 private:
  const std::vector<float>& centres_;
  int dim_;
  std::mt19937_64 rng_;
};

struct SearchFigures {
  double p50_ms = 0, p99_ms = 0, recall = 1;
};

SearchFigures measure_search(const VectorIndex& index, const std::vector<float>& queries, const BenchOptions& o) {
  const size_t nq = queries.size() / o.dim;
  std::vector<double> ms;
  std::vector<std::vector<std::string>> got(nq);
  for (size_t i = 0; i < nq; ++i) {
    const auto t0 = Clock::now();
    auto hits = index.search(&queries[i * o.dim], 1, o.k);
    ms.push_back(seconds_since(t0) * 1e3);
    for (auto& h : hits[0]) got[i].push_back(h.id);
  }
  SearchFigures f;
  f.p50_ms = percentile(ms, 0.5);
  f.p99_ms = percentile(ms, 0.99);
  if (index.ivf_nlist() > 0) {  // truth: every cell probed = exact over the items
    SearchParams all;
    all.ivf_nprobe = index.ivf_nlist();
    size_t found = 0, wanted = 0;
    for (size_t i = 0; i < nq; ++i) {
      std::set<std::string> truth;
      const auto exact = index.search(&queries[i * o.dim], 1, o.k, all);
      for (const auto& h : exact[0]) truth.insert(h.id);
      for (const auto& id : got[i]) found += truth.count(id);
      wanted += truth.size();
    }
    f.recall = wanted ? double(found) / wanted : 1.0;
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions o;
  CLI::App app{"Benchmark a growing vector index: bulk load, sustained single-item adds (write-ahead log, "
               "group commit), search latency/recall before and after, and restart time."};
  app.add_option("--n", o.n, "Items bulk-loaded first")->capture_default_str();
  app.add_option("--dim", o.dim, "Dimension")->capture_default_str();
  app.add_option("--kind", o.kind, "flat or ivf (hnsw inserts are the graph's cost, not the log's)")
      ->capture_default_str();
  app.add_option("--nlist", o.nlist, "IVF cells (0 = automatic)")->capture_default_str();
  app.add_option("--clusters", o.clusters, "Random centres the items gather around")->capture_default_str();
  app.add_option("--chunk", o.chunk, "Items per bulk add")->capture_default_str();
  app.add_option("--writers", o.writers, "Threads adding single items concurrently")->capture_default_str();
  app.add_option("--seconds", o.seconds, "How long the single adds run")->capture_default_str();
  app.add_option("--queries", o.queries, "Searches (one per call) before and after")->capture_default_str();
  app.add_option("--k", o.k, "Hits per search (recall@k)")->capture_default_str();
  app.add_option("--dir", o.dir, "Folder for the index (must not exist; deleted at the end unless --keep)");
  app.add_flag("--keep", o.keep, "Keep the index folder at the end");
  app.add_option("--reopen", o.reopen, "Only time opening this existing index folder (snapshot + log replay)");
  app.add_option("--seed", o.seed, "Random seed")->capture_default_str();
  app.add_flag("--json", o.json, "Print one JSON object instead of text");
  CLI11_PARSE(app, argc, argv);

  namespace fs = std::filesystem;
  if (!o.reopen.empty()) {
    try {
      auto index = PersistentIndex::open(o.reopen);
      const auto s = index->stats();
      if (o.json) {
        std::printf("%s\n", nlohmann::json({{"seconds", s.open_seconds},
                                            {"replayed_records", s.replayed_records},
                                            {"items", index->index()->size()},
                                            {"ivf_nlist", index->index()->ivf_nlist()}})
                                .dump()
                                .c_str());
      } else {
        std::printf("opened %zu items (%llu logged changes replayed) in %.2f s\n", index->index()->size(),
                    static_cast<unsigned long long>(s.replayed_records), s.open_seconds);
      }
      return 0;
    } catch (const refinery::Error& e) {
      std::fprintf(stderr, "refinery-bench-index-growth: %s\n", e.what());
      return 2;
    }
  }
  if (o.dir.empty()) {
    std::fprintf(stderr, "refinery-bench-index-growth: give --dir (or --reopen)\n");
    return 2;
  }
  nlohmann::json out = {{"n", o.n}, {"dim", o.dim}, {"kind", o.kind}, {"writers", o.writers}, {"k", o.k}};
  try {
    if (fs::exists(o.dir)) throw refinery::invalid_argument("--dir " + o.dir + " exists; give a new folder");
    if (o.n == 0 || o.chunk == 0 || o.writers < 1 || o.clusters == 0) {
      throw refinery::invalid_argument("--n, --chunk, --writers and --clusters must be positive");
    }
    IndexOptions options;
    options.kind = refinery::parse_index_kind(o.kind);
    options.ivf_nlist = o.nlist;
    if (options.kind == IndexKind::kHnsw) throw refinery::invalid_argument("--kind: flat or ivf");
    out["nlist"] = o.nlist;

    std::mt19937_64 rng(o.seed);
    std::normal_distribution<float> normal;
    std::vector<float> centres(o.clusters * o.dim);
    for (float& v : centres) v = normal(rng);
    Generator queries_gen(centres, o.dim, o.seed + 1);
    std::vector<float> queries(o.queries * o.dim);
    queries_gen.fill(queries.data(), o.queries);

    // 1. Bulk load.
    PersistentIndex::initialize(o.dir, o.dim, options);
    auto index = PersistentIndex::open(o.dir);
    {
      Generator gen(centres, o.dim, o.seed + 2);
      std::vector<float> chunk;
      std::vector<std::string> ids;
      const auto t0 = Clock::now();
      double upkeep_s = 0;
      for (size_t done = 0; done < o.n;) {
        const size_t m = std::min(o.chunk, o.n - done);
        chunk.resize(m * o.dim);
        gen.fill(chunk.data(), m);
        ids.resize(m);
        for (size_t i = 0; i < m; ++i) ids[i] = "bulk-" + std::to_string(done + i);
        index->add(ids, chunk.data(), m);
        done += m;
        const auto u0 = Clock::now();
        if (index->maintain()) std::fprintf(stderr, "  upkeep at %zu items: %.1f s\n", done, seconds_since(u0));
        upkeep_s += seconds_since(u0);
        std::fprintf(stderr, "\rbulk load: %zu / %zu items", done, o.n);
      }
      const double total = seconds_since(t0);
      std::fprintf(stderr, "\n");
      const auto c0 = Clock::now();
      index->checkpoint();
      const double checkpoint_s = seconds_since(c0);
      out["bulk_load"] = {{"seconds", total},
                          {"items_per_s", o.n / total},
                          {"upkeep_seconds", upkeep_s},
                          {"checkpoint_seconds", checkpoint_s},
                          {"snapshot_bytes", index->stats().snapshot_bytes},
                          {"ivf_nlist", index->index()->ivf_nlist()}};
      std::fprintf(stderr, "bulk load %.1f s (%.0f items/s, %.1f s of it upkeep); checkpoint %.1f s (%.2f GB)\n", total,
                   o.n / total, upkeep_s, checkpoint_s, index->stats().snapshot_bytes / 1e9);
    }

    // 2. Search before.
    auto before = measure_search(*index->index(), queries, o);
    out["search_before"] = {{"p50_ms", before.p50_ms}, {"p99_ms", before.p99_ms}, {"recall_at_k", before.recall}};
    std::fprintf(stderr, "search: p50 %.2f ms, p99 %.2f ms, recall@%d %.4f\n", before.p50_ms, before.p99_ms, o.k,
                 before.recall);

    // 3. Sustained single adds, with the upkeep thread running as in the server.
    {
      std::atomic<bool> stop{false};
      std::mutex mu;
      std::vector<double> latencies_ms;
      std::thread upkeep([&] {
        while (!stop) {
          index->maintain();
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      });
      std::vector<std::thread> writers;
      const auto t0 = Clock::now();
      for (int w = 0; w < o.writers; ++w) {
        writers.emplace_back([&, w] {
          Generator gen(centres, o.dim, o.seed + 100 + w);
          std::vector<float> v(o.dim);
          std::vector<double> mine;
          for (size_t i = 0; !stop; ++i) {
            gen.fill(v.data(), 1);
            const auto a0 = Clock::now();
            index->add({"w" + std::to_string(w) + "-" + std::to_string(i)}, v.data(), 1);
            mine.push_back(seconds_since(a0) * 1e3);
          }
          std::lock_guard<std::mutex> lock(mu);
          latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
        });
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
      stop = true;
      for (auto& t : writers) t.join();
      const double elapsed = seconds_since(t0);
      upkeep.join();
      const auto stats = index->stats();
      out["single_adds"] = {{"items", latencies_ms.size()},
                            {"seconds", elapsed},
                            {"items_per_s", latencies_ms.size() / elapsed},
                            {"p50_ms", percentile(latencies_ms, 0.5)},
                            {"p99_ms", percentile(latencies_ms, 0.99)},
                            {"max_ms", percentile(latencies_ms, 1.0)},
                            {"checkpoints", stats.checkpoints},
                            {"log_bytes", stats.log_bytes}};
      std::fprintf(stderr, "single adds: %zu in %.1f s = %.0f items/s; latency p50 %.2f ms, p99 %.2f ms, max %.1f ms\n",
                   latencies_ms.size(), elapsed, latencies_ms.size() / elapsed, percentile(latencies_ms, 0.5),
                   percentile(latencies_ms, 0.99), percentile(latencies_ms, 1.0));
    }

    // 4. Search after.
    auto after = measure_search(*index->index(), queries, o);
    out["search_after"] = {{"p50_ms", after.p50_ms}, {"p99_ms", after.p99_ms}, {"recall_at_k", after.recall}};
    std::fprintf(stderr, "search: p50 %.2f ms, p99 %.2f ms, recall@%d %.4f\n", after.p50_ms, after.p99_ms, o.k,
                 after.recall);

    // 5. Restart (a new process): with the log of single adds, then after a checkpoint.
    const size_t items = index->index()->size();
    index.reset();
    auto restart = reopen_in_new_process(o.dir);
    out["restart_with_log"] = restart;
    std::fprintf(stderr, "restart: %zu items (%zu logged changes replayed) in %.2f s\n",
                 restart["items"].get<size_t>(), restart["replayed_records"].get<size_t>(),
                 restart["seconds"].get<double>());
    if (restart["items"].get<size_t>() != items) throw refinery::internal_error("the restart lost items");
    if (o.keep) fs::copy(o.dir, o.dir + ".with-log", fs::copy_options::recursive);
    index = PersistentIndex::open(o.dir);
    const auto c0 = Clock::now();
    index->checkpoint();
    const double checkpoint_s = seconds_since(c0);
    index.reset();
    restart = reopen_in_new_process(o.dir);
    out["checkpoint_seconds"] = checkpoint_s;
    out["restart_after_checkpoint"] = restart;
    std::fprintf(stderr, "checkpoint %.1f s; restart from it: %.2f s\n", checkpoint_s, restart["seconds"].get<double>());
    if (!o.keep) fs::remove_all(o.dir);
  } catch (const refinery::Error& e) {
    std::fprintf(stderr, "refinery-bench-index-growth: %s\n", e.what());
    return 2;
  }
  if (o.json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
