// How long a batch of one (model, modality) may hold a free device back
// while it waits for more calls: a fixed fraction of what a forward pass of
// that lane takes, learnt from the passes it ran (a decayed mean, so it
// follows a model that gets slower or faster, e.g. when other lanes share
// the cores). Waiting longer than that cannot pay: in the worst case every
// pass waits its whole budget, and the device then idles at most that
// fraction of the time.
//
// Measured on 2 CPU cores under 32 closed-loop callers, with this rule:
// ViT-B/32 served 0.96 of its raw batch throughput (p99/p50 1.73); a small
// 224 px model (46 ms passes) 0.65, where any fixed wait from 0 to 150 ms
// gave the same throughput (it is bound by the CPU the decodes and RPCs
// share with the pass). Earlier, with the pthreads OpenBLAS and ViT-B/32
// passes of 1.5 s, fixed waits of 50 ms gave 0.83 and 150 ms 0.90-0.95. A
// GPU pass takes a few ms, where the old fixed 5 ms default was about one
// pass.
#pragma once

namespace refinery {

class WaitBudget {
 public:
  static constexpr double kFractionOfPass = 0.1;

  // Each new pass weighs 1; earlier ones are multiplied by `decay` per pass.
  explicit WaitBudget(double decay = 0.9) : decay_(decay) {}

  void observe_pass(double ms);
  double mean_pass_ms() const { return weight_ > 0 ? sum_ / weight_ : 0; }
  // 0 until a pass was seen: a lane's first calls do not wait.
  double ms() const { return kFractionOfPass * mean_pass_ms(); }

 private:
  double decay_;
  double sum_ = 0, weight_ = 0;
};

}  // namespace refinery
