// Collectives for data-parallel training, on PyTorch's own engine (c10d):
// Gloo between CPU processes, NCCL between CUDA devices. The ranks meet
// through a TCPStore at MASTER_ADDR:MASTER_PORT, as torchrun, Kubeflow's
// PyTorchJob and Slurm set them up, so a Refinery rank can run beside them.
//
// Only what the data-parallel step needs: a sum over ranks in place, an
// all-gather of rows (each rank may hold a different number), a broadcast
// and a barrier; each counts the bytes it moved and the time it took.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace refinery {

struct DistributedOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string backend = "auto";  // gloo | nccl | auto (nccl on CUDA, else gloo)
  int timeout_s = 300;           // a collective that waits longer fails (a lost rank)
  // torchrun's agent already serves the store at MASTER_ADDR:MASTER_PORT
  // (TORCHELASTIC_USE_AGENT_STORE=True): every rank joins it as a client,
  // under the prefix of the agent's restart (TORCHELASTIC_RESTART_COUNT), as
  // PyTorch's own ranks do. Otherwise rank 0 serves it.
  bool agent_store = false;
  int restart_count = 0;
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, the
// variables torchrun sets, and its TORCHELASTIC_USE_AGENT_STORE and
// TORCHELASTIC_RESTART_COUNT. Unset RANK and WORLD_SIZE mean one process.
// INVALID_ARGUMENT naming the variable when one is malformed or out of range.
DistributedOptions distributed_options_from_env(DistributedOptions defaults = {});

// Bytes and seconds spent in collectives since the group was made.
struct CollectiveStats {
  int64_t all_reduce_bytes = 0, all_gather_bytes = 0, broadcast_bytes = 0;
  int64_t calls = 0;
  double seconds = 0;
};

class ProcessGroup {
 public:
  // Joins the group: blocks until all world_size ranks have come (or
  // timeout_s has passed: UNAVAILABLE naming the master address). `device`
  // picks the backend under "auto". A world of one needs no store.
  ProcessGroup(const DistributedOptions& options, c10::Device device);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  const std::string& backend() const { return backend_; }

  // Sums each tensor over the ranks, in place; every rank gets the same bits.
  void all_reduce_sum(std::vector<at::Tensor>& tensors);
  // The ranks' `local` [n_r, ...] stacked in rank order: [sum n_r, ...];
  // `counts` (when given) gets each n_r. Every rank must pass the same
  // trailing shape and dtype.
  at::Tensor all_gather_rows(const at::Tensor& local, std::vector<int64_t>* counts = nullptr);
  // The rows each rank holds, in rank order.
  std::vector<int64_t> all_gather_counts(int64_t local);
  void broadcast(at::Tensor& tensor, int root = 0);
  void barrier();

  CollectiveStats stats() const { return stats_; }

 private:
  struct Impl;
  std::vector<at::Tensor> gather_same_shape(const at::Tensor& local);  // one tensor per rank

  DistributedOptions options_;
  std::string backend_;
  std::unique_ptr<Impl> impl_;
  CollectiveStats stats_;
};

}  // namespace refinery
