#include "server/embedding/embedding_batcher.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <atomic>
#include <optional>
#include <thread>

#include "core/base/error.h"
#include "server/models/model_registry.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::TempDir;

class BatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::mkdir((dir_ / "models").c_str(), 0755);
    testing::write_file(dir_ / "models/tiny.safetensors", testing::read_file(testing::fixture("tiny.safetensors")));
    ModelRegistryOptions o;
    o.models_dir = dir_ / "models";
    registry_ = std::make_unique<ModelRegistry>(o);
    model_ = registry_->acquire("tiny");
  }

  at::Tensor tokens(int n, int salt) {
    auto t = torch::zeros({n, 77}, torch::kInt);
    for (int i = 0; i < n; ++i) {
      t[i][0] = 49406;
      t[i][1] = 100 + salt * 7 + i;
      t[i][2] = 49407;
    }
    return t;
  }

  at::Tensor direct(const at::Tensor& t) {
    torch::InferenceMode g;
    return model_->model->encode_text(t);
  }

  TempDir dir_;
  std::unique_ptr<ModelRegistry> registry_;
  std::shared_ptr<LoadedModel> model_;
  DeviceSlots device_{1};
};

TEST_F(BatcherTest, ConcurrentCallsAreBatchedAndEachGetsItsOwnRows) {
  std::atomic<int> batches{0}, max_calls{0};
  EmbeddingBatcherOptions o;
  o.max_batch = 64;
  o.max_wait_ms = 200;  // generous: the machine running the tests may be busy
  EmbeddingBatcher batcher("tiny@1", Modality::kText, o, *registry_, device_, [&](const BatchStats& s) {
    ++batches;
    max_calls = std::max(max_calls.load(), s.calls);
  });
  constexpr int kCallers = 8;
  std::vector<at::Tensor> inputs(kCallers), got(kCallers), want(kCallers);
  for (int c = 0; c < kCallers; ++c) {
    inputs[c] = tokens(1 + c % 3, c);
    want[c] = direct(inputs[c]);
  }
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < kCallers; ++c) {
    threads.emplace_back([&, c] {
      while (!go.load()) std::this_thread::yield();  // submit together
      got[c] = batcher.submit(inputs[c], {}).get().embeddings;
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  for (int c = 0; c < kCallers; ++c) {
    ASSERT_EQ(got[c].sizes(), want[c].sizes()) << c;
    // Batch composition changes BLAS blocking: float32 rounding differs in
    // the last bits, nothing more.
    const double diff = (got[c] - want[c]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5 * want[c].abs().max().item<double>()) << "call " << c << " max diff " << diff;
  }
  EXPECT_GT(max_calls.load(), 1) << "no batch ever held more than one call";
  EXPECT_LT(batches.load(), kCallers);
}

TEST_F(BatcherTest, TwoPassesRunSideBySideAndEachCallGetsItsOwnRows) {
  DeviceSlots slots(2);
  EmbeddingBatcherOptions o;
  o.max_batch = 2;
  o.max_wait_ms = 0;
  o.passes = 2;
  o.pass_threads = 1;
  EmbeddingBatcher batcher("tiny@1", Modality::kText, o, *registry_, slots);
  constexpr int kCallers = 6;
  std::vector<at::Tensor> inputs(kCallers), want(kCallers);
  for (int c = 0; c < kCallers; ++c) {
    inputs[c] = tokens(1 + c % 2, c);
    want[c] = direct(inputs[c]);
  }
  // Callers call until two passes were seen running at once (or 20 s).
  std::atomic<bool> seen_two{false}, done{false};
  std::atomic<int> wrong{0}, calls{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kCallers; ++c) {
    threads.emplace_back([&, c] {
      while (!done.load()) {
        const at::Tensor got = batcher.submit(inputs[c], {}).get().embeddings;
        const double diff = (got - want[c]).abs().max().item<double>();
        if (got.sizes() != want[c].sizes() || diff > 1e-5 * want[c].abs().max().item<double>()) ++wrong;
        ++calls;
      }
    });
  }
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!seen_two.load() && Clock::now() < deadline) {
    if (slots.in_use() == 2) seen_two = true;
    std::this_thread::yield();  // the callers and the workers share the cores
  }
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_TRUE(seen_two.load()) << "two passes never ran at once in " << calls.load() << " calls";
  EXPECT_EQ(wrong.load(), 0) << "of " << calls.load() << " calls";
  EXPECT_TRUE(batcher.idle());
}

TEST_F(BatcherTest, FullQueueIsRejectedAtOnce) {
  EmbeddingBatcherOptions o;
  o.max_batch = 1;
  o.max_wait_ms = 0;
  o.max_queue_items = 2;
  EmbeddingBatcher batcher("tiny@1", Modality::kText, o, *registry_, device_);
  std::optional<DeviceSlots::Lease> hold(device_.acquire());  // the worker stalls on its first batch
  auto first = batcher.submit(tokens(1, 0), {});
  while (batcher.queued_items() != 0) std::this_thread::yield();  // the worker took it
  auto second = batcher.submit(tokens(2, 1), {});                  // fills the queue
  try {
    batcher.submit(tokens(1, 2), {});
    FAIL() << "a full queue accepted more work";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_NE(std::string(e.what()).find("queue"), std::string::npos);
  }
  hold.reset();
  EXPECT_EQ(first.get().embeddings.size(0), 1);
  EXPECT_EQ(second.get().embeddings.size(0), 2);
}

TEST_F(BatcherTest, ExpiredAndCancelledCallsCostNoCompute) {
  std::atomic<int> items_run{0};
  EmbeddingBatcherOptions o;
  o.max_batch = 1;
  o.max_wait_ms = 0;
  EmbeddingBatcher batcher("tiny@1", Modality::kText, o, *registry_, device_,
                           [&](const BatchStats& s) { items_run += s.items; });
  std::optional<DeviceSlots::Lease> hold(device_.acquire());
  auto first = batcher.submit(tokens(1, 0), {});
  while (batcher.queued_items() != 0) std::this_thread::yield();
  CallControl expired;
  expired.deadline = Clock::now() + std::chrono::milliseconds(5);
  auto late = batcher.submit(tokens(1, 1), expired);
  CallControl gone;
  gone.cancelled = [] { return true; };
  auto cancelled = batcher.submit(tokens(1, 2), gone);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  hold.reset();
  EXPECT_EQ(first.get().embeddings.size(0), 1);
  try {
    late.get();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDeadlineExceeded);
  }
  try {
    cancelled.get();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  EXPECT_EQ(items_run.load(), 1);  // only the first call was computed
}

TEST_F(BatcherTest, StopAnswersWhatIsQueued) {
  EmbeddingBatcherOptions o;
  o.max_batch = 4;
  o.max_wait_ms = 1000;  // would wait long for company; stop must not
  auto batcher = std::make_unique<EmbeddingBatcher>("tiny@1", Modality::kText, o, *registry_, device_);
  auto f = batcher->submit(tokens(1, 0), {});
  const auto t0 = Clock::now();
  batcher->stop();
  EXPECT_EQ(f.get().embeddings.size(0), 1);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.9);
  EXPECT_THROW(batcher->submit(tokens(1, 0), {}), Error);
}

}  // namespace
}  // namespace refinery
