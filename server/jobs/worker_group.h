// A refine job run as N worker processes on this host: N ranks of
// `refinery-model refine` that meet over c10d on loopback (Gloo on CPU, NCCL
// on CUDA), as torchrun would start them. Rank 0's events (the JSON lines of
// `--events -`) reach the caller as they come; each rank's stderr goes to
// LOG_DIR/worker-R.log.
//
// The workers die with the thread that started them (PR_SET_PDEATHSIG), so
// a refineryd killed with -9 leaves none behind. When one exits with an
// error, the others are killed (they would fail at their next collective
// anyway) and run() throws, naming it and the last line of its log. When
// `stopping` turns true, every rank gets SIGTERM, and they stop together at
// the next step with a checkpoint.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace refinery {

struct WorkerGroupOptions {
  std::string program;                // refinery-model
  std::vector<std::string> args;      // after `refine`, the same for every rank
  int workers = 2;
  std::vector<std::string> devices;   // one --device per rank; empty: none given
  int threads_per_worker = 1;         // --threads
  std::string log_dir;                // worker-R.log (appended)
  double stop_grace_s = 120;          // after SIGTERM, before SIGKILL
  double failure_grace_s = 5;         // after one rank failed, before the rest are killed
};

enum class WorkerOutcome { kFinished, kStopped };

class WorkerGroup {
 public:
  // Runs the ranks to their end. kStopped when `stopping` turned true and a
  // rank did not finish (they stop with a checkpoint, or die of the signal
  // while starting). Throws refinery::Error (kInternal) when one failed
  // otherwise, naming the rank, its exit and its last log line.
  static WorkerOutcome run(const WorkerGroupOptions& options,
                           const std::function<void(const nlohmann::json& event)>& on_event,
                           const std::function<bool()>& stopping);
};

// `refinery-model` for the workers: $REFINERY_WORKER_PROGRAM, else beside the
// running refineryd (installed), else in the build tree. FAILED_PRECONDITION
// when none exists.
std::string find_worker_program();

}  // namespace refinery
