#include "server/models/model_registry.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

#include "core/base/clock.h"
#include "core/base/atomic_file.h"
#include "core/base/error.h"
#include "core/base/json_integer.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/runtime/inference_precision.h"
#include "core/runtime/torch_runtime.h"
#include "core/safetensors/safetensors.h"
#include "server/runtime/log.h"

namespace refinery {
namespace {

using nlohmann::json;

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Parameter count from the architecture alone (the model is not loaded at
// registration); a test checks it against a built model.
int64_t count_parameters(const ClipConfig& c) {
  int64_t n = 0;
  const auto block = [](int64_t w, double ratio) {
    const int64_t h = static_cast<int64_t>(std::llround(w * ratio));
    return 4 * w /*2 LN*/ + 3 * w * w + 3 * w + w * w + w + w * h + h + h * w + w;
  };
  const auto& v = c.vision;
  const auto& t = c.text;
  const int64_t grid = c.vision_grid();
  n += int64_t{3} * v.patch_size * v.patch_size * v.width + v.width + (grid * grid + 1) * v.width + 4 * v.width +
       v.layers * block(v.width, v.mlp_ratio) + int64_t{v.width} * c.embed_dim;
  n += int64_t{t.vocab_size} * t.width + int64_t{t.context_length} * t.width + t.layers * block(t.width, t.mlp_ratio) +
       2 * t.width + int64_t{t.width} * c.embed_dim + 1;
  return n;
}

// Reports are stored as their proto JSON, so models.json and the API agree.
json evaluations_json(const std::map<std::string, v1::EvalReport>& reports) {
  json out = json::array();
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  for (const auto& [suite, report] : reports) {
    std::string text;
    if (google::protobuf::util::MessageToJsonString(report, &text, o).ok()) out.push_back(json::parse(text));
  }
  return out;
}

std::map<std::string, v1::EvalReport> evaluations_from(const json& j) {
  std::map<std::string, v1::EvalReport> out;
  if (!j.is_array()) return out;
  for (const auto& item : j) {
    v1::EvalReport report;
    const auto status = google::protobuf::util::JsonStringToMessage(item.dump(), &report);
    if (!status.ok()) {
      log_warning("model registry: skipping an unreadable evaluation report: %s", std::string(status.message()).c_str());
      continue;
    }
    out[report.suite()] = report;
  }
  return out;
}

json lineage_json(const Lineage& l) {
  return {{"base_model", l.base_model},
          {"job_id", l.job_id},
          {"data", l.data},
          {"method", l.method},
          {"hyperparameters", l.hyperparameters},
          {"metrics", l.metrics},
          {"evaluations", evaluations_json(l.evaluations)},
          {"base_evaluations", evaluations_json(l.base_evaluations)}};
}

Lineage lineage_from(const json& j) {
  Lineage l;
  if (!j.is_object()) return l;
  l.base_model = j.value("base_model", "");
  l.job_id = j.value("job_id", "");
  l.data = j.value("data", "");
  l.method = j.value("method", "");
  if (j.contains("hyperparameters")) l.hyperparameters = j["hyperparameters"].get<std::map<std::string, std::string>>();
  if (j.contains("metrics")) l.metrics = j["metrics"].get<std::map<std::string, double>>();
  l.evaluations = evaluations_from(j.value("evaluations", json::array()));
  l.base_evaluations = evaluations_from(j.value("base_evaluations", json::array()));
  return l;
}

ModelEntry describe(const std::string& path, const std::string& model_config_path) {
  CheckpointReadOptions o;
  o.model_config_path = model_config_path;
  Checkpoint ck = CheckpointReader::read_header(path, o);
  ModelEntry e;
  e.path = path;
  e.model_config_path = model_config_path;
  e.format = checkpoint_format_name(ck.format);
  e.config = ck.config;
  e.parameters = count_parameters(ck.config);
  return e;
}

}  // namespace

std::string ModelRegistry::name_for_path(const std::string& path) {
  std::string base = path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  base = base.substr(base.find_last_of('/') + 1);
  for (const char* ext : {".safetensors", ".pt", ".pth", ".bin", ".ckpt"}) {
    if (has_suffix(base, ext)) return base.substr(0, base.size() - std::string(ext).size());
  }
  return base;
}

void ModelRegistry::validate_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 128 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
                  });
  if (!ok) throw invalid_argument("invalid model name '" + name + "': use 1-128 of [A-Za-z0-9._-]");
}

ModelRegistry::ModelRegistry(ModelRegistryOptions options) : options_(std::move(options)) {
  // Paths are shown to remote users: make them absolute.
  if (!options_.models_dir.empty()) {
    if (char* real = realpath(options_.models_dir.c_str(), nullptr)) {
      options_.models_dir = real;
      free(real);
    }
  }
  load_persisted();
  scan_models_dir();
  check_precision_rules();
  if (!options_.default_model.empty()) {
    default_ref_ = resolve(options_.default_model).ref();  // an unknown default is a start-up error
  } else if (default_ref_.empty() || !models_.count(default_ref_.substr(0, default_ref_.rfind('@')))) {
    default_ref_ = models_.empty() ? "" : models_.begin()->first + "@" + std::to_string(models_.begin()->second.rbegin()->first);
  }
}

void ModelRegistry::load_persisted() {
  if (options_.data_dir.empty()) return;
  const std::string path = options_.data_dir + "/models.json";
  std::ifstream in(path);
  if (!in) return;
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw invalid_argument(path + ": not valid JSON (" + e.what() + "); fix or remove it");
  }
  for (const auto& m : j.value("models", json::array())) {
    try {
      ModelEntry e = describe(m.at("path").get<std::string>(), m.value("model_config_path", ""));
      e.name = m.at("name").get<std::string>();
      e.version = json_integer<int>(m.at("version"), "version");
      e.created_unix_ms = m.contains("created_unix_ms") ? json_integer<int64_t>(m["created_unix_ms"], "created_unix_ms") : 0;
      e.lineage = lineage_from(m.value("lineage", json::object()));
      e.import_precision = m.value("precision", "");
      e.precision = precision_for(e);
      models_[e.name][e.version].entry = e;
    } catch (const std::exception& ex) {
      // One unreadable model must not keep the server from starting.
      log_warning("model registry: skipping %s: %s", m.dump().c_str(), ex.what());
    }
  }
  hidden_ = j.value("hidden", std::vector<std::string>{});
  default_ref_ = j.value("default", "");
  for (const auto& m : j.value("models_dir_evaluations", json::array())) {
    if (m.is_object() && m.contains("path") && m["path"].is_string()) {
      models_dir_evaluations_[m["path"].get<std::string>()] = evaluations_from(m.value("evaluations", json::array()));
    }
  }
}

void ModelRegistry::scan_models_dir() {
  if (options_.models_dir.empty()) return;
  DIR* d = opendir(options_.models_dir.c_str());
  if (d == nullptr) throw not_found("--models-dir " + options_.models_dir + ": cannot open");
  std::vector<std::string> paths;
  while (dirent* e = readdir(d)) {
    const std::string f = e->d_name;
    if (f.empty() || f[0] == '.') continue;
    paths.push_back(options_.models_dir + "/" + f);
  }
  closedir(d);
  std::sort(paths.begin(), paths.end());
  for (const auto& path : paths) {
    const std::string name = name_for_path(path);
    try {
      validate_name(name);
      bool known = false;
      for (const auto& [v, slot] : models_[name]) known |= slot.entry.path == path;
      if (models_[name].empty()) models_.erase(name);
      if (known) continue;
      ModelEntry e = describe(path, "");
      e.name = name;
      e.version = models_.count(name) ? models_[name].rbegin()->first + 1 : 1;
      e.from_models_dir = true;
      e.created_unix_ms = now_ms();
      if (auto it = models_dir_evaluations_.find(path); it != models_dir_evaluations_.end()) {
        e.lineage.evaluations = it->second;
      }
      if (std::find(hidden_.begin(), hidden_.end(), e.ref()) != hidden_.end()) continue;
      e.precision = precision_for(e);
      models_[name][e.version].entry = e;
      log_info("model registry: %s <- %s (%s, %s)", e.ref().c_str(), path.c_str(), e.format.c_str(),
               e.config.name.empty() ? "inferred" : e.config.name.c_str());
    } catch (const std::exception& ex) {
      log_warning("model registry: skipping %s: %s", path.c_str(), ex.what());
    }
  }
}

void ModelRegistry::persist() const {
  if (options_.data_dir.empty()) return;
  json models = json::array();
  for (const auto& [name, versions] : models_) {
    for (const auto& [v, slot] : versions) {
      const ModelEntry& e = slot.entry;
      if (e.from_models_dir) continue;  // rediscovered at every start
      models.push_back({{"name", e.name},
                        {"version", e.version},
                        {"path", e.path},
                        {"model_config_path", e.model_config_path},
                        {"created_unix_ms", e.created_unix_ms},
                        {"precision", e.import_precision},
                        {"lineage", lineage_json(e.lineage)}});
    }
  }
  json models_dir_evaluations = json::array();
  for (const auto& [path, reports] : models_dir_evaluations_) {
    models_dir_evaluations.push_back({{"path", path}, {"evaluations", evaluations_json(reports)}});
  }
  const json j = {{"models", models},
                  {"hidden", hidden_},
                  {"default", default_ref_},
                  {"models_dir_evaluations", models_dir_evaluations}};
  ::mkdir(options_.data_dir.c_str(), 0755);
  write_file_atomically(options_.data_dir + "/models.json", j.dump(2) + "\n");
}

std::vector<ModelEntry> ModelRegistry::list() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelEntry> out;
  for (const auto& [name, versions] : models_) {
    for (const auto& [v, slot] : versions) out.push_back(slot.entry);
  }
  return out;
}

const ModelRegistry::Slot& ModelRegistry::find_slot(const std::string& ref_in) const {
  const std::string ref = ref_in.empty() ? default_ref_ : ref_in;
  if (ref.empty()) throw not_found("no model is registered (start refineryd with --models-dir or import one)");
  const size_t at = ref.rfind('@');
  const std::string name = ref.substr(0, at);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.empty()) {
    std::string known;
    for (const auto& [n, v] : models_) known += (known.empty() ? "" : ", ") + n;
    throw not_found("unknown model '" + ref + "'" + (known.empty() ? "" : " (known: " + known + ")"));
  }
  if (at == std::string::npos) return it->second.rbegin()->second;
  int version = 0;
  try {
    size_t used = 0;
    version = std::stoi(ref.substr(at + 1), &used);
    if (used != ref.size() - at - 1) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw invalid_argument("malformed model reference '" + ref + "' (name or name@version)");
  }
  auto v = it->second.find(version);
  if (v == it->second.end()) {
    throw not_found("model '" + name + "' has no version " + std::to_string(version) + " (latest is " +
                    std::to_string(it->second.rbegin()->first) + ")");
  }
  return v->second;
}

ModelRegistry::Slot& ModelRegistry::find_slot(const std::string& ref) {
  return const_cast<Slot&>(static_cast<const ModelRegistry*>(this)->find_slot(ref));
}

ModelEntry ModelRegistry::resolve(const std::string& ref) const {
  std::lock_guard<std::mutex> lock(mu_);
  return find_slot(ref).entry;
}

std::string ModelRegistry::default_ref() const {
  std::lock_guard<std::mutex> lock(mu_);
  return default_ref_;
}

std::string ModelRegistry::precision_for(const ModelEntry& e) const {
  if (!e.import_precision.empty()) return e.import_precision;
  return rule_precision(e);
}

std::string ModelRegistry::rule_precision(const ModelEntry& e) const {
  for (const std::string& key : {e.ref(), e.name}) {
    if (auto it = options_.model_precision.find(key); it != options_.model_precision.end()) return it->second;
  }
  return options_.precision;
}

void ModelRegistry::check_precision_rules() {
  const c10::Device device = resolve_device(options_.device);
  auto check = [&](const std::string& precision, const std::string& what) {
    try {
      check_inference_precision(parse_inference_precision(precision), device);
    } catch (const Error& e) {
      throw Error(e.code(), what + ": " + e.what());
    }
  };
  check(options_.precision, "--precision");
  for (const auto& [key, precision] : options_.model_precision) {
    const std::string what = "--model-precision " + key + "=" + precision;
    check(precision, what);
    const std::string name = key.substr(0, key.rfind('@'));
    auto it = models_.find(name);
    bool found = it != models_.end();
    if (found && key.find('@') != std::string::npos) {
      found = false;
      for (const auto& [v, slot] : it->second) found |= slot.entry.ref() == key;
    }
    if (!found) {
      std::string known;
      for (const auto& [n, v] : models_) known += (known.empty() ? "" : ", ") + n;
      throw invalid_argument(what + ": no registered model is " + single_quoted(key) +
                             (known.empty() ? "" : " (registered: " + known + ")"));
    }
  }
  // Imported with a precision this device cannot run (models.json from
  // another machine): served in the server's rule instead, said once.
  for (auto& [name, versions] : models_) {
    for (auto& [v, slot] : versions) {
      ModelEntry& e = slot.entry;
      if (e.precision == rule_precision(e)) continue;
      try {
        check_inference_precision(parse_inference_precision(e.precision), device);
      } catch (const Error& ex) {
        const std::string rule = rule_precision(e);
        log_warning("model registry: %s was imported in %s, which this server cannot run (%s); serving it in %s",
                    e.ref().c_str(), e.precision.c_str(), ex.what(), rule.c_str());
        e.precision = rule;
      }
    }
  }
}

ModelEntry ModelRegistry::import(const std::string& path_in, const std::string& name_in,
                                 const std::string& model_config_path, bool make_default, const Lineage& lineage,
                                 const std::string& precision) {
  if (path_in.empty()) throw invalid_argument("import needs a checkpoint path");
  if (!precision.empty()) {
    try {
      check_inference_precision(parse_inference_precision(precision), resolve_device(options_.device));
    } catch (const Error& e) {
      throw Error(e.code(), "import precision: " + std::string(e.what()));
    }
  }
  std::string path = path_in;
  if (char* real = realpath(path_in.c_str(), nullptr)) {  // a missing path is reported by describe()
    path = real;
    free(real);
  }
  const std::string name = name_in.empty() ? name_for_path(path) : name_in;
  validate_name(name);
  ModelEntry e = describe(path, model_config_path);  // validates outside the lock: may read a whole .pt
  e.name = name;
  e.created_unix_ms = now_ms();
  e.lineage = lineage;
  e.import_precision = precision;
  std::lock_guard<std::mutex> lock(mu_);
  auto& versions = models_[name];
  e.version = versions.empty() ? 1 : versions.rbegin()->first + 1;
  e.precision = precision_for(e);  // after the version: a NAME@VERSION rule must see the right one
  versions[e.version].entry = e;
  if (make_default || default_ref_.empty()) default_ref_ = e.ref();
  persist();
  log_info("model registry: imported %s <- %s", e.ref().c_str(), path.c_str());
  return e;
}

void ModelRegistry::remove(const std::string& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  const ModelEntry e = find_slot(ref).entry;
  if (e.from_models_dir) hidden_.push_back(e.ref());
  models_[e.name].erase(e.version);
  if (models_[e.name].empty()) models_.erase(e.name);
  if (default_ref_ == e.ref()) {
    default_ref_ = models_.empty() ? ""
                                   : models_.begin()->first + "@" + std::to_string(models_.begin()->second.rbegin()->first);
  }
  persist();
  unloads_.fetch_add(1, std::memory_order_release);
  log_info("model registry: removed %s", e.ref().c_str());
}

void ModelRegistry::record_evaluation(const std::string& ref, const v1::EvalReport& report) {
  v1::EvalReport kept = report;
  for (auto& task : *kept.mutable_tasks()) task.clear_details_json();  // kept with the job
  std::lock_guard<std::mutex> lock(mu_);
  ModelEntry& e = find_slot(ref).entry;
  e.lineage.evaluations[kept.suite()] = kept;
  if (e.from_models_dir) models_dir_evaluations_[e.path] = e.lineage.evaluations;
  persist();
}

std::shared_ptr<LoadedModel> ModelRegistry::acquire(const std::string& ref) {
  std::shared_ptr<std::mutex> load_mutex;
  ModelEntry entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Slot& slot = find_slot(ref);
    slot.last_used = ++clock_;
    if (slot.loaded) return slot.loaded;
    load_mutex = slot.load_mutex;
    entry = slot.entry;
  }
  // One load per model at a time; other models load (and serve) meanwhile.
  std::lock_guard<std::mutex> loading(*load_mutex);
  {
    std::lock_guard<std::mutex> lock(mu_);
    Slot& slot = find_slot(entry.ref());
    if (slot.loaded) return slot.loaded;
  }
  const auto start = std::chrono::steady_clock::now();
  CheckpointReadOptions o;
  o.model_config_path = entry.model_config_path;
  auto loaded = std::make_shared<LoadedModel>();
  loaded->entry = entry;
  loaded->model = CheckpointReader::load_model(entry.path, o);
  loaded->model->to(resolve_device(options_.device));
  loaded->model->eval();
  for (const auto& p : loaded->model->parameters()) loaded->memory_bytes += p.numel() * p.element_size();
  // int8: the linear layers packed once per load. The fp32 parameters stay
  // (export reads them); those of a memory-mapped safetensors file are then
  // clean file pages the kernel can drop, as the int8 forward never reads them.
  if (entry.precision == "int8") loaded->memory_bytes += loaded->model->quantize_int8();
  // bf16: the batchers keep autocast's bf16 copies of the weights (2 bytes
  // per parameter each) for as long as they serve the model.
  if (entry.precision == "bf16") loaded->memory_bytes += loaded->memory_bytes / 2 * options_.bf16_weight_copies;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::lock_guard<std::mutex> lock(mu_);
  Slot& slot = find_slot(entry.ref());  // may have been removed meanwhile: then NOT_FOUND
  slot.loaded = loaded;
  slot.last_used = ++clock_;
  log_info("model registry: loaded %s (%.1f MB, %s) in %.2f s", entry.ref().c_str(), loaded->memory_bytes / 1e6,
           entry.precision.c_str(), seconds);
  evict_over_budget(entry.ref());
  if (options_.on_loaded) options_.on_loaded(entry, seconds);
  return loaded;
}

void ModelRegistry::evict_over_budget(const std::string& keep) {
  for (;;) {
    int64_t total = 0;
    Slot* lru = nullptr;
    for (auto& [name, versions] : models_) {
      for (auto& [v, slot] : versions) {
        if (!slot.loaded) continue;
        total += slot.loaded->memory_bytes;
        if (slot.entry.ref() != keep && (lru == nullptr || slot.last_used < lru->last_used)) lru = &slot;
      }
    }
    if (total <= options_.memory_budget_bytes || lru == nullptr) return;
    log_info("model registry: unloading %s (least recently used; %.1f MB loaded, budget %.1f MB)",
             lru->entry.ref().c_str(), total / 1e6, options_.memory_budget_bytes / 1e6);
    lru->loaded.reset();  // in-flight users keep their reference until done
    unloads_.fetch_add(1, std::memory_order_release);
  }
}

bool ModelRegistry::is_loaded(const std::string& ref) const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<bool>(find_slot(ref).loaded);
}

int64_t ModelRegistry::loaded_bytes() const {
  int64_t total = 0;
  for (const auto& [ref, bytes] : loaded_models()) total += bytes;
  return total;
}

size_t ModelRegistry::loaded_count() const { return loaded_models().size(); }

std::map<std::string, int64_t> ModelRegistry::loaded_models() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, int64_t> out;
  for (const auto& [name, versions] : models_) {
    for (const auto& [v, slot] : versions) {
      if (slot.loaded) out[slot.entry.ref()] = slot.loaded->memory_bytes;
    }
  }
  return out;
}

}  // namespace refinery
