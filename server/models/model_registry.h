// Every model the server knows, by "name@version": the checkpoints found in
// --models-dir at start, models imported at run time and models produced by
// refine jobs (persisted in <data-dir>/models.json). Weights load lazily on
// first use and are unloaded least-recently-used first when the loaded
// weights exceed the memory budget; a caller holding a model keeps it alive.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/model/clip_config.h"
#include "core/model/clip_model.h"
#include "refinery/v1/eval.pb.h"

namespace refinery {

// Where a model came from (refine jobs) and how it measured.
struct Lineage {
  std::string base_model, job_id, data, method;
  std::map<std::string, std::string> hyperparameters;
  std::map<std::string, double> metrics;
  // The latest report per suite name, on this model (details_json dropped).
  std::map<std::string, v1::EvalReport> evaluations;
  // Refined models: the refine job's suite on its base, before step 1.
  std::map<std::string, v1::EvalReport> base_evaluations;
  bool refined() const { return !base_model.empty() || !job_id.empty(); }
  bool empty() const { return !refined() && evaluations.empty() && base_evaluations.empty(); }
};

struct ModelEntry {
  std::string name;
  int version = 1;
  std::string path;
  std::string model_config_path;  // optional architecture override
  std::string format;
  ClipConfig config;
  int64_t parameters = 0;
  int64_t created_unix_ms = 0;
  bool from_models_dir = false;
  Lineage lineage;
  // How its forward passes run: "fp32", "bf16" or "int8" (the registry
  // sets it: the import's choice, else the rule for its name, else the
  // server's default). `import_precision` is the import's choice, if any.
  std::string precision = "fp32";
  std::string import_precision;

  std::string ref() const { return name + "@" + std::to_string(version); }
};

struct LoadedModel {
  ModelEntry entry;
  ClipModel model{nullptr};
  int64_t memory_bytes = 0;
};

struct ModelRegistryOptions {
  std::string models_dir;     // scanned at start
  std::string data_dir;       // models.json lives here
  std::string default_model;  // "name" or "name@version"; empty: first registered
  int64_t memory_budget_bytes = int64_t{8} << 30;
  std::string device = "cpu";
  // Forward-pass precision (core/runtime/inference_precision.h): every
  // model's default, and rules by "name" or "name@version" (the more
  // specific wins; a model imported with a precision keeps its own). A rule
  // naming no registered model, or a precision the device cannot run, is an
  // error at start.
  std::string precision = "fp32";
  std::map<std::string, std::string> model_precision;
  // bf16: how many autocast copies of a model's weights its batchers keep
  // (autocast's cache is per thread: one per worker of a lane, that is the
  // passes side by side, --parallel-passes), counted in its memory.
  int bf16_weight_copies = 1;
  // Called after each load of weights (file to the serving device), with
  // its wall time: refineryd's load-time histogram. May be empty.
  std::function<void(const ModelEntry&, double seconds)> on_loaded;
};

class ModelRegistry {
 public:
  explicit ModelRegistry(ModelRegistryOptions options);

  std::vector<ModelEntry> list() const;
  // "" = the default model; "name" = its latest version; "name@N".
  // NOT_FOUND names the reference and, for an unknown name, the known ones.
  ModelEntry resolve(const std::string& ref) const;
  std::string default_ref() const;  // "" when no model is registered

  // Registers a checkpoint on the server's disk (its header is validated
  // now). An existing name gets a new version.
  // `precision` empty: the server's rule for the name.
  ModelEntry import(const std::string& path, const std::string& name, const std::string& model_config_path,
                    bool make_default, const Lineage& lineage = {}, const std::string& precision = "");
  void remove(const std::string& ref);
  // Keeps `report` as the model's latest of its suite (persisted; a
  // models-dir checkpoint's reports are kept by its path). NOT_FOUND when
  // the model is gone.
  void record_evaluation(const std::string& ref, const v1::EvalReport& report);

  // The model's weights on the serving device, loading them if needed.
  std::shared_ptr<LoadedModel> acquire(const std::string& ref);
  bool is_loaded(const std::string& ref) const;
  int64_t loaded_bytes() const;
  size_t loaded_count() const;
  std::map<std::string, int64_t> loaded_models() const;  // ref -> bytes
  const std::string& device() const { return options_.device; }
  // Counts models removed or unloaded so far: users holding per-model state
  // (the embedding engine's batchers) reclaim it when this changes.
  uint64_t unloads() const { return unloads_.load(std::memory_order_acquire); }

  // Name a checkpoint path is registered under: its file (or folder) name
  // without the extension, e.g. "vit-b-32.safetensors" -> "vit-b-32".
  static std::string name_for_path(const std::string& path);
  static void validate_name(const std::string& name);

 private:
  struct Slot {
    ModelEntry entry;
    std::shared_ptr<LoadedModel> loaded;
    std::shared_ptr<std::mutex> load_mutex = std::make_shared<std::mutex>();
    uint64_t last_used = 0;
  };
  Slot& find_slot(const std::string& ref);  // caller holds mu_
  const Slot& find_slot(const std::string& ref) const;
  void persist() const;  // caller holds mu_
  void load_persisted();
  void scan_models_dir();
  void evict_over_budget(const std::string& keep);  // caller holds mu_
  std::string precision_for(const ModelEntry& e) const;   // the import's, else the rule's
  std::string rule_precision(const ModelEntry& e) const;  // --model-precision for it, else --precision
  void check_precision_rules();



  ModelRegistryOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::map<int, Slot>> models_;  // name -> version -> slot
  std::vector<std::string> hidden_;                      // deleted models-dir refs
  // Reports on models-dir checkpoints, by path: attached when they are found.
  std::map<std::string, std::map<std::string, v1::EvalReport>> models_dir_evaluations_;
  std::string default_ref_;
  uint64_t clock_ = 0;
  std::atomic<uint64_t> unloads_{0};
};

}  // namespace refinery
