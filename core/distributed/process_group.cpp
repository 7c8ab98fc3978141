#include "core/distributed/process_group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#if defined(REFINERY_HAVE_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(REFINERY_HAVE_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <algorithm>
#include <cerrno>
#include <map>

#include "core/base/error.h"

namespace refinery {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi) {
    throw invalid_argument(std::string(name) + "=" + single_quoted(v) + " is not an integer in [" + std::to_string(lo) +
                           ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(n);
}

// Runs a collective and waits for it, mapping a lost rank to UNAVAILABLE.
template <typename Run>
void wait_for(Run&& run, const char* what, const DistributedOptions& o) {
  try {
    run();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw unavailable(std::string(what) + " across " + std::to_string(o.world_size) + " ranks failed on rank " +
                      std::to_string(o.rank) + " (a rank stopped, or took over " + std::to_string(o.timeout_s) +
                      " s): " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    // A rank that died or hung: Gloo reports a closed connection or a timeout.
    throw unavailable(std::string(what) + " across " + std::to_string(o.world_size) + " ranks failed on rank " +
                      std::to_string(o.rank) + " (a rank stopped, or took over " + std::to_string(o.timeout_s) +
                      " s): " + e.what());
  }
}

}  // namespace

DistributedOptions distributed_options_from_env(DistributedOptions d) {
  d.world_size = env_int("WORLD_SIZE", d.world_size, 1, 1 << 16);
  d.rank = env_int("RANK", d.rank, 0, d.world_size - 1);
  d.local_rank = env_int("LOCAL_RANK", d.local_rank, 0, 1 << 16);
  d.master_addr = env_or("MASTER_ADDR", d.master_addr);
  d.master_port = env_int("MASTER_PORT", d.master_port, 1, 65535);
  d.agent_store = env_or("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
  d.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", d.restart_count, 0, 1 << 30);
  if (d.rank >= d.world_size) {
    throw invalid_argument("RANK " + std::to_string(d.rank) + " is not below WORLD_SIZE " + std::to_string(d.world_size));
  }
  return d;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  // The backend in use. LibTorch 2.x makes these c10d::Backends rather than
  // ProcessGroups; their collectives have the same signatures in both, so
  // they are held by their own types and called through run().
#if defined(REFINERY_HAVE_GLOO)
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#if defined(REFINERY_HAVE_NCCL)
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  c10::Device device{c10::kCPU};

  template <typename F>
  void run(F&& f) {
#if defined(REFINERY_HAVE_GLOO)
    if (gloo) return f(*gloo);
#endif
#if defined(REFINERY_HAVE_NCCL)
    if (nccl) return f(*nccl);
#endif
    throw internal_error("no c10d backend to run a collective on");
  }
};

ProcessGroup::ProcessGroup(const DistributedOptions& options, c10::Device device)
    : options_(options), impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  if (options_.world_size < 1 || options_.rank < 0 || options_.rank >= options_.world_size) {
    throw invalid_argument("rank " + std::to_string(options_.rank) + " of a world of " +
                           std::to_string(options_.world_size));
  }
  backend_ = options_.backend;
  if (backend_ == "auto") backend_ = device.is_cuda() ? "nccl" : "gloo";
  if (backend_ != "gloo" && backend_ != "nccl") {
    throw invalid_argument("unknown backend " + single_quoted(backend_) + " (gloo or nccl)");
  }
  if (backend_ == "nccl" && !device.is_cuda()) throw invalid_argument("the nccl backend needs a CUDA device");
  if (backend_ == "gloo" && device.is_cuda()) {
    throw invalid_argument("the gloo backend here runs on the CPU; use --backend nccl for " + device.str());
  }
#if !defined(REFINERY_HAVE_NCCL)
  if (backend_ == "nccl" && options_.world_size > 1) {
    throw failed_precondition("this build of Refinery has no NCCL (a LibTorch without c10d NCCL, or no nccl.h)");
  }
#endif
#if !defined(REFINERY_HAVE_GLOO)
  if (backend_ == "gloo" && options_.world_size > 1) {
    throw failed_precondition("this build of Refinery has no Gloo (built without Gloo's headers: libgloo-dev)");
  }
#endif
  if (options_.world_size == 1) return;  // nothing to talk to
  const auto timeout = std::chrono::milliseconds(int64_t{options_.timeout_s} * 1000);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(options_.master_port);
    so.isServer = options_.rank == 0 && !options_.agent_store;
    so.numWorkers = static_cast<size_t>(options_.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(options_.master_addr, so);
    if (options_.agent_store) {
      // The agent's store outlives restarts: each attempt's keys apart.
      impl_->store = c10::make_intrusive<c10d::PrefixStore>(
          "/worker/attempt_" + std::to_string(options_.restart_count), impl_->store);
    }
  } catch (const std::exception& e) {
    throw unavailable("rank " + std::to_string(options_.rank) + " of " + std::to_string(options_.world_size) +
                      " could not meet the others at " + options_.master_addr + ":" +
                      std::to_string(options_.master_port) + " within " + std::to_string(options_.timeout_s) +
                      " s: " + e.what());
  }
  try {
    if (backend_ == "gloo") {
#if defined(REFINERY_HAVE_GLOO)
      auto go = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME picks the interface, as in PyTorch; on one host
      // the loopback one.
      const std::string ifname = env_or("GLOO_SOCKET_IFNAME", "");
      const bool loopback = options_.master_addr == "127.0.0.1" || options_.master_addr == "localhost";
      go->devices.push_back(!ifname.empty() ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                            : loopback      ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                            : c10d::ProcessGroupGloo::createDefaultDevice());
      impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, options_.rank, options_.world_size, go);
#endif
    } else {
#if defined(REFINERY_HAVE_NCCL)
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = timeout;
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, options_.rank, options_.world_size, no);
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw unavailable("rank " + std::to_string(options_.rank) + " of " + std::to_string(options_.world_size) +
                      " could not set up " + backend_ + " with the other ranks (master " + options_.master_addr + ":" +
                      std::to_string(options_.master_port) + ", timeout " + std::to_string(options_.timeout_s) +
                      " s): " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw unavailable("rank " + std::to_string(options_.rank) + " of " + std::to_string(options_.world_size) +
                      " could not set up " + backend_ + " with the other ranks (master " + options_.master_addr + ":" +
                      std::to_string(options_.master_port) + "): " + e.what());
  }
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::all_reduce_sum(std::vector<at::Tensor>& tensors) {
  if (options_.world_size == 1 || tensors.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  // One flat buffer per dtype: one collective instead of one per tensor (a
  // vector given to c10d is one tensor's replicas, not several tensors).
  std::map<at::ScalarType, std::vector<size_t>> by_dtype;
  for (size_t i = 0; i < tensors.size(); ++i) by_dtype[tensors[i].scalar_type()].push_back(i);
  for (const auto& [dtype, indices] : by_dtype) {
    std::vector<at::Tensor> flat;
    for (size_t i : indices) flat.push_back(tensors[i].reshape({-1}));
    std::vector<at::Tensor> buffer = {torch::cat(flat).contiguous()};
    wait_for([&] { impl_->run([&](auto& g) { g.allreduce(buffer)->wait(); }); }, "all-reduce", options_);
    int64_t offset = 0;
    for (size_t i : indices) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(buffer[0].slice(0, offset, offset + n).view_as(tensors[i]));
      offset += n;
    }
    stats_.all_reduce_bytes += buffer[0].numel() * static_cast<int64_t>(buffer[0].element_size());
    ++stats_.calls;
  }
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<at::Tensor> ProcessGroup::gather_same_shape(const at::Tensor& local) {
  std::vector<at::Tensor> input = {local.contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int r = 0; r < options_.world_size; ++r) output[0].push_back(torch::empty_like(input[0]));
  wait_for([&] { impl_->run([&](auto& g) { g.allgather(output, input)->wait(); }); }, "all-gather", options_);
  stats_.all_gather_bytes += local.numel() * static_cast<int64_t>(local.element_size()) * options_.world_size;
  ++stats_.calls;
  return output[0];
}

std::vector<int64_t> ProcessGroup::all_gather_counts(int64_t local) {
  if (options_.world_size == 1) return {local};
  const at::Tensor mine = torch::full({1}, local, torch::TensorOptions().dtype(torch::kInt64).device(impl_->device));
  std::vector<int64_t> counts;
  for (const at::Tensor& t : gather_same_shape(mine)) counts.push_back(t.to(torch::kCPU).item<int64_t>());
  return counts;
}

at::Tensor ProcessGroup::all_gather_rows(const at::Tensor& local, std::vector<int64_t>* counts_out) {
  if (options_.world_size == 1) {
    if (counts_out != nullptr) *counts_out = {local.size(0)};
    return local;
  }
  const auto start = std::chrono::steady_clock::now();
  // Rows may differ between ranks (images that failed to decode): the
  // counts first, then every rank's rows padded to the largest count.
  const std::vector<int64_t> counts = all_gather_counts(local.size(0));
  if (counts_out != nullptr) *counts_out = counts;
  const int64_t most = *std::max_element(counts.begin(), counts.end());
  at::Tensor padded = local;
  if (local.size(0) < most) {
    std::vector<int64_t> shape = local.sizes().vec();
    shape[0] = most - local.size(0);
    padded = torch::cat({local, torch::zeros(shape, local.options())});
  }
  std::vector<at::Tensor> parts = gather_same_shape(padded);
  for (int r = 0; r < options_.world_size; ++r) parts[r] = parts[r].slice(0, 0, counts[r]);
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return torch::cat(parts);
}

void ProcessGroup::broadcast(at::Tensor& tensor, int root) {
  if (options_.world_size == 1) return;
  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> t = {tensor};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  wait_for([&] { impl_->run([&](auto& g) { g.broadcast(t, o)->wait(); }); }, "broadcast", options_);
  stats_.broadcast_bytes += tensor.numel() * static_cast<int64_t>(tensor.element_size());
  ++stats_.calls;
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void ProcessGroup::barrier() {
  if (options_.world_size == 1) return;
  wait_for([&] { impl_->run([&](auto& g) { g.barrier()->wait(); }); }, "barrier", options_);
}

}  // namespace refinery
