#include "server/metrics/metrics_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/base/error.h"
#include "server/metrics/process_metrics.h"

namespace refinery {
namespace {

// Asserts that `fn` throws refinery::Error with kInvalidArgument and a message
// containing `needle`.
template <typename Fn>
void expect_invalid_argument(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected invalid_argument mentioning \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(MetricsRegistryTest, ExposesTheTextFormat) {
  MetricsRegistry registry;
  auto& requests = registry.counter("refinery_requests_total", "Requests handled.", {"method", "code"});
  requests.with({"EmbedText", "OK"}).Increment();
  requests.with({"EmbedText", "OK"}).Increment(2);
  requests.with({"Classify", "INVALID_ARGUMENT"}).Increment();

  auto& depth = registry.gauge("refinery_queue_depth", "Requests waiting.").with();
  depth.Set(4);
  depth.Decrement(2);
  depth.Increment(0.5);

  // Bounds and observations are powers of two so the sum is exact: 0.125 and
  // 0.25 (inclusive bound) land in le=0.25, 0.5 in le=1, 3 in le=4, 8 only in +Inf.
  auto& latency = registry.histogram("refinery_latency_seconds", "Request latency.", {0.25, 1, 4}, {"rpc"});
  for (double v : {0.125, 0.25, 0.5, 3.0, 8.0}) latency.with({"Embed"}).Observe(v);

  // Families sorted by name, series by their labels (which print sorted by
  // name); a histogram's count and sum come before its buckets.
  const std::string expected =
      "# HELP refinery_latency_seconds Request latency.\n"
      "# TYPE refinery_latency_seconds histogram\n"
      "refinery_latency_seconds_count{rpc=\"Embed\"} 5\n"
      "refinery_latency_seconds_sum{rpc=\"Embed\"} 11.875\n"
      "refinery_latency_seconds_bucket{rpc=\"Embed\",le=\"0.25\"} 2\n"
      "refinery_latency_seconds_bucket{rpc=\"Embed\",le=\"1\"} 3\n"
      "refinery_latency_seconds_bucket{rpc=\"Embed\",le=\"4\"} 4\n"
      "refinery_latency_seconds_bucket{rpc=\"Embed\",le=\"+Inf\"} 5\n"
      "# HELP refinery_queue_depth Requests waiting.\n"
      "# TYPE refinery_queue_depth gauge\n"
      "refinery_queue_depth 2.5\n"
      "# HELP refinery_requests_total Requests handled.\n"
      "# TYPE refinery_requests_total counter\n"
      "refinery_requests_total{code=\"INVALID_ARGUMENT\",method=\"Classify\"} 1\n"
      "refinery_requests_total{code=\"OK\",method=\"EmbedText\"} 3\n";
  EXPECT_EQ(registry.serialize(), expected);
}

TEST(MetricsRegistryTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  registry.gauge("refinery_model_loaded", "Path C:\\models\nsecond line, \"quoted\".", {"model"})
      .with({"a\"b\\c\nd"})
      .Set(1);
  const std::string expected =
      "# HELP refinery_model_loaded Path C:\\\\models\\nsecond line, \"quoted\".\n"
      "# TYPE refinery_model_loaded gauge\n"
      "refinery_model_loaded{model=\"a\\\"b\\\\c\\nd\"} 1\n";
  EXPECT_EQ(registry.serialize(), expected);
}

TEST(MetricsRegistryTest, ReplacesInvalidUtf8SoPrometheusKeepsTheScrape) {
  EXPECT_EQ(valid_utf8("caf\xC3\xA9"), "caf\xC3\xA9");           // valid UTF-8 kept
  EXPECT_EQ(valid_utf8("bad\xFF"), "bad\xEF\xBF\xBD");           // stray byte
  EXPECT_EQ(valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(valid_utf8("cut\xE2\x82"), "cut\xEF\xBF\xBD\xEF\xBF\xBD");
  // ... in what a scrape shows.
  MetricsRegistry registry;
  registry.gauge("refinery_model_loaded", "Loaded.", {"model"}).with({"bad\xFF"}).Set(1);
  EXPECT_NE(registry.serialize().find("{model=\"bad\xEF\xBF\xBD\"} 1\n"), std::string::npos);
}

TEST(MetricsRegistryTest, RejectsInvalidNames) {
  MetricsRegistry registry;
  expect_invalid_argument([&] { registry.counter("", "h"); }, "invalid metric name");
  expect_invalid_argument([&] { registry.counter("1st_total", "h"); }, "\"1st_total\"");
  expect_invalid_argument([&] { registry.gauge("queue-depth", "h"); }, "\"queue-depth\"");
  expect_invalid_argument([&] { registry.gauge("queue depth", "h"); }, "\"queue depth\"");
  expect_invalid_argument([&] { registry.gauge("ok_name", "h", {"bad-label"}); }, "\"bad-label\"");
  expect_invalid_argument([&] { registry.gauge("ok_name", "h", {"0label"}); }, "\"0label\"");
  expect_invalid_argument([&] { registry.gauge("ok_name", "h", {"__reserved"}); }, "reserved");
  expect_invalid_argument([&] { registry.gauge("ok_name", "h", {"a", "a"}); }, "twice");
  expect_invalid_argument([&] { registry.histogram("ok_seconds", "h", {1}, {"le"}); }, "\"le\"");
  // Colons and a leading underscore are legal metric names.
  EXPECT_NO_THROW(registry.gauge("refinery:job_progress", "h"));
  EXPECT_NO_THROW(registry.gauge("_private_gauge", "h", {"le"}));  // "le" only reserved on histograms
  // A rejected registration leaves nothing behind.
  EXPECT_EQ(registry.serialize().find("ok_name"), std::string::npos);
}

TEST(MetricsRegistryTest, RejectsBadBuckets) {
  MetricsRegistry registry;
  expect_invalid_argument([&] { registry.histogram("a_seconds", "h", {1, 1}); }, "strictly increasing");
  expect_invalid_argument([&] { registry.histogram("b_seconds", "h", {2, 1}); }, "strictly increasing");
  expect_invalid_argument([&] { registry.histogram("c_seconds", "h", {std::nan(""), 1}); }, "NaN");
  expect_invalid_argument([&] { registry.histogram("d_seconds", "h", {-INFINITY, 1}); }, "-Inf");
  // A trailing +Inf is implied anyway, so it is accepted and not doubled.
  registry.histogram("e_seconds", "h", {1, INFINITY}).with().Observe(2);
  const std::string text = registry.serialize();
  EXPECT_NE(text.find("e_seconds_bucket{le=\"1\"} 0\ne_seconds_bucket{le=\"+Inf\"} 1\n"), std::string::npos) << text;
}

TEST(MetricsRegistryTest, SameDefinitionReturnsTheExistingFamily) {
  MetricsRegistry registry;
  auto& first = registry.counter("refinery_errors_total", "Errors.", {"code"});
  auto& again = registry.counter("refinery_errors_total", "Errors.", {"code"});
  EXPECT_EQ(&first, &again);
  first.with({"INTERNAL"}).Increment();
  EXPECT_EQ(again.with({"INTERNAL"}).Value(), 1);

  auto& hist = registry.histogram("refinery_batch_size", "Batch sizes.", size_buckets());
  EXPECT_EQ(&hist, &registry.histogram("refinery_batch_size", "Batch sizes.", size_buckets()));
}

TEST(MetricsRegistryTest, ConflictingDefinitionIsAnError) {
  MetricsRegistry registry;
  registry.counter("refinery_errors_total", "Errors.", {"code"});
  expect_invalid_argument([&] { registry.gauge("refinery_errors_total", "Errors.", {"code"}); },
                          "already registered as counter");
  expect_invalid_argument([&] { registry.counter("refinery_errors_total", "Errors.", {"rpc"}); },
                          "refinery_errors_total");
  expect_invalid_argument([&] { registry.counter("refinery_errors_total", "Errors.", {"code", "rpc"}); },
                          "refinery_errors_total");
  expect_invalid_argument([&] { registry.counter("refinery_errors_total", "Other help.", {"code"}); },
                          "refinery_errors_total");

  registry.histogram("refinery_rpc_seconds", "RPC latency.", {0.1, 1});
  expect_invalid_argument([&] { registry.histogram("refinery_rpc_seconds", "RPC latency.", {0.1, 2}); },
                          "buckets");
  // Series names collide even though family names differ.
  expect_invalid_argument([&] { registry.counter("refinery_rpc_seconds_count", "Clash."); },
                          "refinery_rpc_seconds_count");
  registry.gauge("refinery_thing_sum", "A gauge.");
  expect_invalid_argument([&] { registry.histogram("refinery_thing", "Clash.", {1}); }, "refinery_thing_sum");
}

TEST(MetricsRegistryTest, WrongNumberOfLabelValuesIsAnError) {
  MetricsRegistry registry;
  auto& family = registry.counter("refinery_requests_total", "Requests.", {"method", "code"});
  expect_invalid_argument([&] { family.with({"EmbedText"}); }, "method, code");
  expect_invalid_argument([&] { family.with({"a", "b", "c"}); }, "refinery_requests_total");
  expect_invalid_argument([&] { family.with(); }, "got 0 value(s)");
}

TEST(MetricsRegistryTest, ChildReferencesStayValidAsTheFamilyGrows) {
  MetricsRegistry registry;
  auto& family = registry.counter("refinery_requests_total", "Requests.", {"model"});
  Counter& first = family.with({"m0"});
  for (int i = 1; i < 1000; ++i) family.with({"m" + std::to_string(i)}).Increment();
  first.Increment(5);
  EXPECT_EQ(&first, &family.with({"m0"}));
  EXPECT_EQ(family.with({"m0"}).Value(), 5);
}

TEST(MetricsRegistryTest, UnlabelledFamiliesShowZeroAndEmptyLabelledOnesShowNothing) {
  MetricsRegistry registry;
  registry.counter("refinery_restarts_total", "Restarts.");
  registry.counter("refinery_requests_total", "Requests.", {"method"});
  EXPECT_EQ(registry.serialize(),
            "# HELP refinery_restarts_total Restarts.\n"
            "# TYPE refinery_restarts_total counter\n"
            "refinery_restarts_total 0\n");
}

TEST(MetricsRegistryTest, RemoveDropsAChild) {
  MetricsRegistry registry;
  auto& size = registry.gauge("refinery_index_vectors", "Vectors per index.", {"index"});
  size.with({"photos"}).Set(10);
  size.with({"docs"}).Set(20);
  size.remove({"photos"});
  size.remove({"never-existed"});
  const std::string text = registry.serialize();
  EXPECT_EQ(text.find("photos"), std::string::npos) << text;
  EXPECT_NE(text.find("refinery_index_vectors{index=\"docs\"} 20\n"), std::string::npos) << text;
}

TEST(MetricsRegistryTest, ConcurrentUpdatesSumExactly) {
  MetricsRegistry registry;
  auto& requests = registry.counter("refinery_requests_total", "Requests.", {"method"});
  auto& in_flight = registry.gauge("refinery_in_flight", "In flight.").with();
  auto& latency = registry.histogram("refinery_latency_seconds", "Latency.", {0.5, 1.5});
  Counter& shared = requests.with({"EmbedText"});

  constexpr int kThreads = 8;
  constexpr int kIterations = 50000;
  std::atomic<bool> stop_scraping{false};
  // A concurrent scraper must neither crash nor block the writers.
  std::thread scraper([&] {
    while (!stop_scraping.load()) (void)registry.serialize();
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads use the cached reference, half look it up each time.
      for (int i = 0; i < kIterations; ++i) {
        if (t % 2 == 0) {
          shared.Increment();
        } else {
          requests.with({"EmbedText"}).Increment();
        }
        requests.with({"thread" + std::to_string(t)}).Increment(0.5);
        in_flight.Increment();
        latency.with().Observe(1.0);
        in_flight.Decrement();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  stop_scraping = true;
  scraper.join();

  EXPECT_EQ(shared.Value(), static_cast<double>(kThreads) * kIterations);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(requests.with({"thread" + std::to_string(t)}).Value(), kIterations * 0.5);
  }
  EXPECT_EQ(in_flight.Value(), 0);
  const prometheus::ClientMetric::Histogram h = latency.with().Collect().histogram;
  EXPECT_EQ(h.sample_count, static_cast<std::uint64_t>(kThreads) * kIterations);
  ASSERT_EQ(h.bucket.size(), 3u);  // 0.5, 1.5, +Inf
  EXPECT_EQ(h.bucket[0].cumulative_count, 0u);
  EXPECT_EQ(h.bucket[1].cumulative_count, h.sample_count);
  EXPECT_EQ(h.sample_sum, static_cast<double>(kThreads) * kIterations);
}

TEST(MetricsRegistryTest, CollectorsRunAtScrapeTime) {
  MetricsRegistry registry;
  auto& depth = registry.gauge("refinery_queue_depth", "Requests waiting.").with();
  int queue = 3;
  int runs = 0;
  const auto id = registry.add_collector([&] {
    ++runs;
    depth.Set(queue);
  });
  EXPECT_EQ(runs, 0);  // nothing runs at registration
  EXPECT_NE(registry.serialize().find("refinery_queue_depth 3\n"), std::string::npos);
  queue = 7;
  EXPECT_NE(registry.serialize().find("refinery_queue_depth 7\n"), std::string::npos);
  EXPECT_EQ(runs, 2);

  registry.remove_collector(id);
  queue = 9;
  EXPECT_NE(registry.serialize().find("refinery_queue_depth 7\n"), std::string::npos);
  EXPECT_EQ(runs, 2);
}

TEST(MetricsRegistryTest, CollectorMayRegisterFamilies) {
  MetricsRegistry registry;
  registry.add_collector(
      [&] { registry.gauge("refinery_models_loaded", "Models.", {"model"}).with({"vit-b-32"}).Set(1); });
  EXPECT_NE(registry.serialize().find("refinery_models_loaded{model=\"vit-b-32\"} 1\n"), std::string::npos);
}

TEST(MetricsRegistryTest, FailingCollectorFailsTheScrape) {
  MetricsRegistry registry;
  registry.add_collector([] { throw internal_error("index store unreadable"); });
  try {
    registry.serialize();
    FAIL() << "expected the collector's error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index store unreadable"), std::string::npos);
  }
}

TEST(MetricsRegistryTest, BucketHelpers) {
  const std::vector<double> latency = latency_buckets_seconds();
  ASSERT_FALSE(latency.empty());
  EXPECT_EQ(latency.front(), 0.0005);
  EXPECT_EQ(latency.back(), 30);
  for (std::size_t i = 1; i < latency.size(); ++i) EXPECT_LT(latency[i - 1], latency[i]);
  EXPECT_EQ(size_buckets(), (std::vector<double>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}));
  EXPECT_EQ(exponential_buckets(0.001, 10, 3).size(), 3u);
  EXPECT_EQ(linear_buckets(0, 0.25, 4), (std::vector<double>{0, 0.25, 0.5, 0.75}));
  expect_invalid_argument([] { exponential_buckets(0, 2, 3); }, "start > 0");
  expect_invalid_argument([] { linear_buckets(0, 1, 0); }, "count >= 1");
  // Every helper's output is accepted as-is by histogram().
  MetricsRegistry registry;
  EXPECT_NO_THROW(registry.histogram("a_seconds", "h", latency_buckets_seconds()));
  EXPECT_NO_THROW(registry.histogram("b_items", "h", size_buckets()));
}

// Reads `name VALUE` from an exposition, for unlabelled samples.
double sample_value(const std::string& text, const std::string& name) {
  const std::string prefix = "\n" + name + " ";
  const auto pos = text.find(prefix);
  if (pos == std::string::npos) throw std::runtime_error("no sample " + name + " in:\n" + text);
  return std::stod(text.substr(pos + prefix.size()));
}

TEST(ProcessMetricsTest, ReportsThisProcess) {
  MetricsRegistry registry;
  register_process_metrics(registry);
  // Burn a little CPU and hold a couple of extra descriptors so the values move.
  volatile double sink = 0;
  for (int i = 0; i < 2000000; ++i) sink = sink + std::sqrt(static_cast<double>(i));
  const std::string before = registry.serialize();
  std::thread worker([] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); });
  const std::string during = registry.serialize();
  worker.join();

  EXPECT_GT(sample_value(during, "process_cpu_seconds_total"), 0);
  EXPECT_GT(sample_value(during, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(sample_value(during, "process_virtual_memory_bytes"),
            sample_value(during, "process_resident_memory_bytes"));
  EXPECT_GE(sample_value(during, "process_open_fds"), 3);  // at least stdin, stdout, stderr
  EXPECT_GE(sample_value(during, "process_max_fds"), sample_value(during, "process_open_fds"));
  // At least the worker (a sanitizer runtime may start a thread of its own
  // with the first thread of the process).
  EXPECT_GE(sample_value(during, "process_threads"), sample_value(before, "process_threads") + 1);
  const double now = static_cast<double>(std::time(nullptr));
  const double start = sample_value(during, "process_start_time_seconds");
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 3600);  // this test binary did not start an hour ago
  EXPECT_NE(during.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
}

}  // namespace
}  // namespace refinery
