// refinery-bench-index: build each vector index kind over random unit
// vectors and measure single-query search (one query per call, as the server
// searches) against the exact (flat) results: latency, QPS and recall@k for a
// few values of each kind's knob.
//
//   refinery-bench-index --n 100000 --dim 512 --queries 1000 --k 10 --kinds flat,ivf,hnsw [--json]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/index/vector_index.h"

namespace {

using refinery::IndexKind;
using refinery::IndexOptions;
using refinery::SearchParams;
using refinery::VectorIndex;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  size_t n = 100000;
  int dim = 512;
  size_t queries = 1000;
  int k = 10;
  std::string kinds = "flat,ivf,hnsw";
  size_t clusters = 0;  // 0 = uniform on the sphere; N = items around N random centres
  uint64_t seed = 42;
  bool json = false;
};

struct Row {
  std::string kind, knob;
  int knob_value = 0;
  double build_s = 0, mean_ms = 0, p50_ms = 0, p99_ms = 0, qps = 0, recall = 0;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// n unit vectors: uniform on the sphere, or (with centres) a random centre
// plus noise each, a crude stand-in for embeddings, which are far from uniform.
std::vector<float> random_unit_vectors(size_t n, int dim, const std::vector<float>& centres, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  const size_t clusters = centres.size() / dim;
  std::uniform_int_distribution<size_t> pick(0, clusters ? clusters - 1 : 0);
  std::vector<float> x(n * dim);
  for (size_t i = 0; i < n; ++i) {
    float* row = &x[i * dim];
    const float* c = clusters ? &centres[pick(rng) * dim] : nullptr;
    double sq = 0;
    for (int j = 0; j < dim; ++j) {
      row[j] = c ? c[j] + 0.5f * normal(rng) : normal(rng);
      sq += double(row[j]) * row[j];
    }
    const float inv = float(1.0 / std::sqrt(sq));
    for (int j = 0; j < dim; ++j) row[j] *= inv;
  }
  return x;
}

std::vector<std::string> split_kinds(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * v.size())) - 1);
  return v[i];
}

// Runs the queries one per call; fills latency figures and per-query ids.
Row run_queries(const VectorIndex& index, const std::vector<float>& queries, const BenchOptions& o,
                const SearchParams& params, std::vector<std::vector<std::string>>* ids) {
  std::vector<double> ms(o.queries);
  ids->assign(o.queries, {});
  const auto t_all = Clock::now();
  for (size_t i = 0; i < o.queries; ++i) {
    const auto t0 = Clock::now();
    auto hits = index.search(&queries[i * o.dim], 1, o.k, params);
    ms[i] = seconds_since(t0) * 1e3;
    for (auto& h : hits[0]) (*ids)[i].push_back(std::move(h.id));
  }
  const double total = seconds_since(t_all);
  Row r;
  double sum = 0;
  for (double m : ms) sum += m;
  r.mean_ms = sum / o.queries;
  r.p50_ms = percentile(ms, 0.50);
  r.p99_ms = percentile(ms, 0.99);
  r.qps = o.queries / total;
  return r;
}

double recall_at_k(const std::vector<std::vector<std::string>>& truth, const std::vector<std::vector<std::string>>& got) {
  size_t found = 0, wanted = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    std::set<std::string> t(truth[i].begin(), truth[i].end());
    for (const auto& id : got[i]) found += t.count(id);
    wanted += t.size();
  }
  return wanted ? double(found) / wanted : 1.0;
}

std::unique_ptr<VectorIndex> build(IndexKind kind, const std::vector<float>& data, const std::vector<std::string>& ids,
                                   const BenchOptions& o, double* build_s) {
  IndexOptions options;
  options.kind = kind;
  auto index = std::make_unique<VectorIndex>(o.dim, options);
  std::fprintf(stderr, "building %s over %zu x %d ...\n", refinery::index_kind_name(kind), o.n, o.dim);
  const auto t0 = Clock::now();
  index->add(ids, data.data(), o.n);
  *build_s = seconds_since(t0);
  std::fprintf(stderr, "  built in %.2f s%s\n", *build_s,
               kind == IndexKind::kIvf ? (" (nlist " + std::to_string(index->ivf_nlist()) + ")").c_str() : "");
  return index;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions o;
  CLI::App app{"Benchmark Refinery's vector index kinds (flat, ivf, hnsw): build time, single-query latency, "
               "QPS and recall@k against exact search, over random unit vectors."};
  app.add_option("--n", o.n, "Indexed vectors")->capture_default_str();
  app.add_option("--dim", o.dim, "Dimension")->capture_default_str();
  app.add_option("--queries", o.queries, "Queries, searched one per call")->capture_default_str();
  app.add_option("--k", o.k, "Hits per query (recall@k)")->capture_default_str();
  app.add_option("--kinds", o.kinds, "Comma-separated kinds: flat,ivf,hnsw (exact truth is always computed)")
      ->capture_default_str();
  app.add_option("--clusters", o.clusters, "0 = uniform vectors; N = vectors around N random centres")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Random seed")->capture_default_str();
  app.add_flag("--json", o.json, "Print one JSON object instead of a table");
  CLI11_PARSE(app, argc, argv);

  try {
    if (o.n == 0 || o.queries == 0 || o.k < 1) throw refinery::invalid_argument("--n, --queries and --k must be positive");
    std::vector<IndexKind> kinds;
    for (const auto& name : split_kinds(o.kinds)) kinds.push_back(refinery::parse_index_kind(name));

    std::mt19937_64 rng(o.seed);
    std::fprintf(stderr, "generating %zu + %zu random unit vectors of dim %d (seed %llu)\n", o.n, o.queries, o.dim,
                 static_cast<unsigned long long>(o.seed));
    std::vector<float> centres(o.clusters * o.dim);  // shared: queries come from the items' clusters
    std::normal_distribution<float> normal;
    for (float& v : centres) v = normal(rng);
    const std::vector<float> data = random_unit_vectors(o.n, o.dim, centres, rng);
    const std::vector<float> queries = random_unit_vectors(o.queries, o.dim, centres, rng);
    std::vector<std::string> ids(o.n);
    for (size_t i = 0; i < o.n; ++i) ids[i] = std::to_string(i);

    std::vector<Row> rows;
    double flat_build_s = 0;
    auto flat = build(IndexKind::kFlat, data, ids, o, &flat_build_s);
    std::vector<std::vector<std::string>> truth;
    std::fprintf(stderr, "exact search: %zu queries ...\n", o.queries);
    Row exact = run_queries(*flat, queries, o, {}, &truth);
    exact.kind = "flat";
    exact.build_s = flat_build_s;
    exact.recall = 1.0;
    if (std::find(kinds.begin(), kinds.end(), IndexKind::kFlat) != kinds.end()) rows.push_back(exact);
    flat.reset();

    for (IndexKind kind : kinds) {
      if (kind == IndexKind::kFlat) continue;
      double build_s = 0;
      auto index = build(kind, data, ids, o, &build_s);
      const bool ivf = kind == IndexKind::kIvf;
      for (int value : ivf ? std::vector<int>{1, 8, 32, 0} : std::vector<int>{16, 64, 256}) {
        SearchParams params;
        (ivf ? params.ivf_nprobe : params.hnsw_ef_search) = value;
        std::fprintf(stderr, "  %s %s=%d ...\n", refinery::index_kind_name(kind), ivf ? "nprobe" : "ef_search", value);
        std::vector<std::vector<std::string>> got;
        Row r = run_queries(*index, queries, o, params, &got);
        r.kind = refinery::index_kind_name(kind);
        r.knob = ivf ? "nprobe" : "ef_search";
        r.knob_value = value;  // 0 = the index default
        r.build_s = build_s;
        r.recall = recall_at_k(truth, got);
        rows.push_back(r);
      }
    }

    if (o.json) {
      nlohmann::json j = {{"n", o.n}, {"dim", o.dim}, {"queries", o.queries}, {"k", o.k},
                          {"clusters", o.clusters}, {"seed", o.seed}, {"rows", nlohmann::json::array()}};
      for (const Row& r : rows) {
        j["rows"].push_back({{"kind", r.kind}, {"knob", r.knob}, {"knob_value", r.knob_value},
                             {"build_s", r.build_s}, {"mean_ms", r.mean_ms}, {"p50_ms", r.p50_ms},
                             {"p99_ms", r.p99_ms}, {"qps", r.qps}, {"recall_at_k", r.recall}});
      }
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("n=%zu dim=%d queries=%zu k=%d clusters=%zu (knob 0 = index default)\n", o.n, o.dim, o.queries, o.k,
                  o.clusters);
      std::printf("%-5s %-10s %6s %9s %9s %9s %9s %9s %9s\n", "kind", "knob", "value", "build_s", "mean_ms", "p50_ms",
                  "p99_ms", "qps", "recall");
      for (const Row& r : rows) {
        std::printf("%-5s %-10s %6d %9.2f %9.3f %9.3f %9.3f %9.0f %9.4f\n", r.kind.c_str(),
                    r.knob.empty() ? "-" : r.knob.c_str(), r.knob_value, r.build_s, r.mean_ms, r.p50_ms, r.p99_ms,
                    r.qps, r.recall);
      }
    }
  } catch (const refinery::Error& e) {
    std::fprintf(stderr, "refinery-bench-index: %s\n", e.what());
    return 2;
  }
  return 0;
}
