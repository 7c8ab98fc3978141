// A training checkpoint: everything a refine job needs to continue exactly
// where it stopped. One folder per checkpoint, `<dir>/step-00000123/` with
//   model.safetensors      the student's fp32 weights (a loadable CLIP checkpoint)
//   optimizer.safetensors  AdamW's moments per parameter, its step count
//   state.json             step, skipped-image count, the caller's extra JSON
// The folder is written under a temporary name and renamed into place, so a
// crash leaves either a whole checkpoint or none. The random streams need no
// saving: RaFA's prior samples and the data order are pure functions of
// (seed, step) (see rafa_loss.h and epoch_plan.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>
#include "core/model/clip_model.h"
#include "core/train/adamw.h"

namespace refinery {

struct TrainingCheckpointInfo {
  std::string path;    // the folder
  int64_t step = 0;    // optimizer steps done
  int64_t images_skipped = 0;
  nlohmann::json extra;
};

class TrainingCheckpoint {
 public:
  // Writes a checkpoint of `student` and `optimizer` after `step` steps into
  // `dir` (created if needed) and returns its folder. Replaces an existing
  // checkpoint of the same step.
  static TrainingCheckpointInfo save(const std::string& dir, int64_t step, int64_t images_skipped,
                                     ClipModel& student, AdamW& optimizer, const nlohmann::json& extra = {});
  // Complete checkpoints in `dir`, ascending by step (partial folders and
  // stray files are ignored).
  static std::vector<TrainingCheckpointInfo> list(const std::string& dir);
  static std::optional<TrainingCheckpointInfo> latest(const std::string& dir);
  // Loads weights and optimizer state (onto the tensors' current devices).
  // Errors name the folder and the offending tensor.
  static void load(const TrainingCheckpointInfo& checkpoint, ClipModel& student, AdamW& optimizer);
  // Removes all but the newest `keep` checkpoints; returns the removed ones.
  static std::vector<TrainingCheckpointInfo> prune(const std::string& dir, int keep);
  static void remove(const std::string& path);
};

}  // namespace refinery
