// A thread's own intra-op thread count: what the server's side-by-side
// forward passes rely on to split the cores between them.
#include "core/runtime/torch_runtime.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <thread>

#include "core/base/error.h"

namespace refinery {
namespace {

int process_threads() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) n += e.is_directory() ? 1 : 0;
  return n;
}

// How many threads LibTorch's own kernels run a large elementwise op on,
// when called from this thread: OpenMP starts the helper threads of a
// thread's first parallel region (and keeps them while the thread lives),
// so the process gains one thread per helper. (ATen's inline parallel_for
// would be compiled here, without OpenMP, so it cannot tell.)
int threads_an_op_runs_on() {
  const int before = process_threads();
  const auto x = torch::ones({1 << 22});
  const auto y = (x * 2 + 1).sum();
  (void)y.item<float>();
  return process_threads() - before + 1;
}

TEST(TorchRuntime, AThreadsOwnIntraOpCountLeavesOtherThreadsTheirs) {
  at::set_num_threads(2);  // the process-wide count, as configure_runtime sets it
  int own = 0, own_loop = 0, other = 0, other_loop = 0;
  bool set = false;
  std::thread([&] {
    set = set_this_threads_intra_op_threads(1);
    own = at::get_num_threads();
    own_loop = threads_an_op_runs_on();
  }).join();
  if (!set) GTEST_SKIP() << "this LibTorch has no OpenMP runtime to set a thread's count with";
  std::thread([&] {
    other = at::get_num_threads();
    other_loop = threads_an_op_runs_on();
  }).join();
  EXPECT_EQ(own, 1);
  EXPECT_EQ(own_loop, 1);
  EXPECT_EQ(other, 2);
  EXPECT_EQ(other_loop, 2);
  EXPECT_EQ(at::get_num_threads(), 2);  // this thread too
  EXPECT_THROW(set_this_threads_intra_op_threads(0), Error);
}

}  // namespace
}  // namespace refinery
