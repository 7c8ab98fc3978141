// Everything a CLIP-Refine run is told: one plain struct whose field
// defaults are METHOD.md's paper setting (AdamW lr 1e-6, weight decay 0.1,
// constant schedule, batch 512, 1 epoch, 1% validation with seed 42).
// Filled from a job's proto spec by the server, from flags by tools.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include "core/train/objective_options.h"

namespace refinery {

enum class LrSchedule { kConstant, kCosine };
LrSchedule parse_lr_schedule(const std::string& name);  // "constant" | "cosine"
const char* lr_schedule_name(LrSchedule schedule);

// fp32 everywhere is the authors' setting and the default; bf16 (autocast, fp32
// master weights, the objective in fp32) is an opt-in where the device runs it
// (training_precision.h). "auto" is read as fp32, for specs that still say it.
enum class TrainingPrecision { kFloat32, kBFloat16 };
TrainingPrecision parse_training_precision(const std::string& name);  // "auto" | "fp32" | "bf16"
const char* training_precision_name(TrainingPrecision precision);

struct RefineOptions {
  RefineObjectiveOptions objective;  // method, lambdas, alpha, temperature, prior
  int epochs = 1;
  int64_t max_steps = 0;             // 0: epochs * steps per epoch; otherwise at most this many
  int64_t batch_size = 512;          // pairs per step; the softmax runs over the batch
  // Pairs per forward/backward pass within a step (gradient caching: the
  // same gradient as the whole batch at once, activations of one micro-batch
  // in memory, one extra forward pass). 0 = the whole batch.
  int64_t micro_batch_size = 0;
  double lr = 1e-6;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  LrSchedule schedule = LrSchedule::kConstant;
  int64_t warmup_steps = 0;          // linear warm-up from lr / warmup_steps
  double grad_clip = 0.0;            // max global gradient L2 norm; 0 = none
  uint64_t seed = 42;                // data order, caption choice, RaFA samples
  double val_fraction = 0.01;        // of the images, held out for evaluation
  uint64_t split_seed = 42;          // the split stays put when `seed` changes
  int64_t eval_every = 0;            // steps; 0 = only before the first and after the last step
  int64_t checkpoint_every = 100;    // steps; 0 = only when stopped early
  int keep_checkpoints = 3;
  TrainingPrecision precision = TrainingPrecision::kFloat32;
  int data_workers = 0;              // decode threads; 0 = all cores
  int prefetch_batches = 2;
  double max_skipped_fraction = 0.01;  // undecodable images tolerated, of those seen (at least 10)
  int eval_batch_size = 64;            // images or texts per forward pass when evaluating

  // INVALID_ARGUMENT naming the field and its value.
  void validate() const;
  // Learning rate for step `step` (0-based) of `total_steps`.
  double lr_at(int64_t step, int64_t total_steps) const;
  // The hyper-parameters as strings, for a model's lineage.
  std::map<std::string, std::string> to_map() const;
};

}  // namespace refinery
