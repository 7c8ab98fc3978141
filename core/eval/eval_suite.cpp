#include "core/eval/eval_suite.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/base/error.h"
#include "core/eval/alignment_metrics.h"
#include "core/eval/zeroshot_prompts.h"

namespace refinery {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string string_field(const json& task, const char* key, const std::string& where) {
  auto it = task.find(key);
  if (it == task.end() || it->is_null()) return "";
  if (!it->is_string()) throw invalid_argument(where + ": \"" + key + "\" must be a string");
  return it->get<std::string>();
}

std::vector<std::string> strings_or_numbers(const json& value, const std::string& where) {
  if (!value.is_array()) throw invalid_argument(where + " must be an array");
  std::vector<std::string> out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i].is_string()) {
      out.push_back(value[i].get<std::string>());
    } else if (value[i].is_number_integer()) {
      out.push_back(std::to_string(value[i].get<int64_t>()));
    } else {
      throw invalid_argument(where + "[" + std::to_string(i) + "] must be a string");
    }
  }
  return out;
}

// Rethrows `e` with "task 'NAME': " in front, keeping its code.
[[noreturn]] void rethrow_for_task(const std::string& task, const std::exception& e) {
  const auto* err = dynamic_cast<const Error*>(&e);
  throw Error(err ? err->code() : ErrorCode::kInvalidArgument, "task " + single_quoted(task) + ": " + e.what());
}

void check_stop(const EvalCallbacks& cb) {
  if (cb.should_stop && cb.should_stop()) throw Error(ErrorCode::kCancelled, "evaluation cancelled");
}

}  // namespace

const char* eval_kind_name(EvalKind kind) { return kind == EvalKind::kZeroShot ? "zeroshot" : "retrieval"; }

EvalKind parse_eval_kind(const std::string& name) {
  if (name == "zeroshot" || name == "zero-shot") return EvalKind::kZeroShot;
  if (name == "retrieval") return EvalKind::kRetrieval;
  throw invalid_argument("unknown task kind " + single_quoted(name) + " (the kinds are zeroshot and retrieval)");
}

EvalSuiteSpec parse_eval_suite(const json& j, const std::string& what) {
  if (!j.is_object()) throw invalid_argument(what + ": expected a JSON object {\"name\", \"tasks\": [...]}");
  static const std::set<std::string> kSuiteKeys = {"name", "tasks"};
  for (const auto& [key, value] : j.items()) {
    if (!kSuiteKeys.count(key)) throw invalid_argument(what + ": unknown key " + single_quoted(key) + " (known: name, tasks)");
  }
  EvalSuiteSpec suite;
  const std::string name = string_field(j, "name", what);
  if (!name.empty()) suite.name = name;
  if (!j.contains("tasks") || !j["tasks"].is_array() || j["tasks"].empty()) {
    throw invalid_argument(what + ": \"tasks\" must be a non-empty array");
  }
  static const std::set<std::string> kTaskKeys = {"name",    "kind",    "data",   "dataset",  "classnames",
                                                  "classes", "prompt", "templates"};
  static const std::set<std::string> kZeroShotOnly = {"dataset", "classnames", "classes", "prompt", "templates"};
  std::set<std::string> names;
  for (size_t i = 0; i < j["tasks"].size(); ++i) {
    const json& t = j["tasks"][i];
    std::string where = what + " task " + std::to_string(i);
    if (!t.is_object()) throw invalid_argument(where + ": expected an object");
    EvalTaskSpec task;
    task.name = string_field(t, "name", where);
    if (!task.name.empty()) where = what + " task " + single_quoted(task.name);
    for (const auto& [key, value] : t.items()) {
      if (!kTaskKeys.count(key)) {
        throw invalid_argument(where + ": unknown key " + single_quoted(key) +
                               " (known: name, kind, data, dataset, classnames, classes, prompt, templates)");
      }
    }
    const std::string kind = string_field(t, "kind", where);
    if (kind.empty()) throw invalid_argument(where + ": \"kind\" is required (zeroshot or retrieval)");
    try {
      task.kind = parse_eval_kind(kind);
    } catch (const Error& e) {
      throw invalid_argument(where + ": " + e.what());
    }
    task.data = string_field(t, "data", where);
    if (task.data.empty()) throw invalid_argument(where + ": \"data\" is required");
    if (task.kind == EvalKind::kRetrieval) {
      for (const auto& key : kZeroShotOnly) {
        if (t.contains(key)) throw invalid_argument(where + ": " + single_quoted(key) + " is for zeroshot tasks only");
      }
    }
    task.names.dataset = string_field(t, "dataset", where);
    task.names.classnames_file = string_field(t, "classnames", where);
    if (t.contains("classes")) task.names.classes = strings_or_numbers(t["classes"], where + ": \"classes\"");
    task.prompt = string_field(t, "prompt", where);
    if (t.contains("templates")) {
      if (t["templates"].is_array()) {
        task.template_list = strings_or_numbers(t["templates"], where + ": \"templates\"");
      } else {
        task.templates = string_field(t, "templates", where);
      }
    }
    if (task.name.empty()) {
      task.name = !task.names.dataset.empty() ? task.names.dataset : std::string(eval_kind_name(task.kind)) + "-" + std::to_string(i);
    }
    if (!names.insert(task.name).second) throw invalid_argument(what + ": two tasks are named " + single_quoted(task.name));
    suite.tasks.push_back(std::move(task));
  }
  return suite;
}

EvalSuiteSpec load_eval_suite_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw invalid_argument("suite file " + single_quoted(path) + ": cannot be opened");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw invalid_argument("suite file " + single_quoted(path) + ": invalid JSON: " + without_quoted_input(e.what()));
  }
  return parse_eval_suite(j, "suite file " + single_quoted(path));
}

json eval_suite_to_json(const EvalSuiteSpec& suite) {
  json tasks = json::array();
  for (const auto& t : suite.tasks) {
    json task = {{"name", t.name}, {"kind", eval_kind_name(t.kind)}, {"data", t.data}};
    if (!t.names.dataset.empty()) task["dataset"] = t.names.dataset;
    if (!t.names.classnames_file.empty()) task["classnames"] = t.names.classnames_file;
    if (!t.names.classes.empty()) task["classes"] = t.names.classes;
    if (!t.prompt.empty()) task["prompt"] = t.prompt;
    if (!t.template_list.empty()) {
      task["templates"] = t.template_list;
    } else if (!t.templates.empty()) {
      task["templates"] = t.templates;
    }
    tasks.push_back(std::move(task));
  }
  return {{"name", suite.name}, {"tasks", tasks}};
}

int64_t PreparedEvalTask::images() const {
  return static_cast<int64_t>(spec.kind == EvalKind::kZeroShot ? classes.items.size() : captions.items.size());
}

int64_t PreparedEvalTask::texts() const {
  return spec.kind == EvalKind::kZeroShot ? static_cast<int64_t>(class_names.size() * templates.size())
                                          : static_cast<int64_t>(captions.caption_count());
}

int64_t PreparedEvalSuite::total_items() const {
  int64_t total = 0;
  for (const auto& t : tasks) total += t.images() + t.texts();
  return total;
}

PreparedEvalSuite prepare_eval_suite(const EvalSuiteSpec& suite, const EvalPrepareOptions& options) {
  if (suite.tasks.empty()) throw invalid_argument("suite " + single_quoted(suite.name) + " has no tasks");
  PreparedEvalSuite out;
  out.name = suite.name;
  for (const EvalTaskSpec& spec : suite.tasks) {
    PreparedEvalTask task;
    task.spec = spec;
    try {
      if (spec.kind == EvalKind::kZeroShot) {
        ClassDatasetOptions data_options;
        data_options.check_images = options.check_images;
        data_options.roots = options.roots;
        if (options.roots != nullptr) {
          if (!spec.names.classnames_file.empty()) options.roots->check(spec.names.classnames_file, "classnames file");
          // A templates value is a file or a data set name of zeroshot_prompts.json.
          std::error_code ec;
          if (!spec.templates.empty() &&
              (spec.templates.find('/') != std::string::npos || std::filesystem::exists(spec.templates, ec))) {
            options.roots->check(spec.templates, "templates file");
          }
        }
        task.classes = load_class_dataset(spec.data, data_options);
        task.class_names = resolve_class_names(task.classes, spec.names);
        if (!spec.template_list.empty()) {
          task.templates = spec.template_list;
          validate_prompt_templates(task.templates);
        } else if (!spec.templates.empty()) {
          task.templates = load_prompt_templates(spec.templates);
        } else {
          task.templates = {spec.prompt.empty() ? std::string(kDefaultPromptTemplate) : spec.prompt};
          validate_prompt_templates(task.templates);
        }
      } else {
        CaptionDatasetOptions data_options;
        data_options.check_images_exist = options.check_images;
        data_options.roots = options.roots;
        task.captions = load_caption_dataset(spec.data, data_options);
        if (options.check_images) {
          std::vector<std::string> paths;
          for (const auto& item : task.captions.items) paths.push_back(item.image_path);
          check_image_files(paths, "data set " + single_quoted(spec.data));
        }
      }
    } catch (const std::exception& e) {
      rethrow_for_task(spec.name, e);
    }
    out.tasks.push_back(std::move(task));
  }
  return out;
}

std::map<std::string, double> retrieval_metrics(const at::Tensor& image_features, const at::Tensor& text_features,
                                                const std::vector<int64_t>& text_image) {
  std::map<std::string, double> m = alignment_metrics(image_features, text_features, text_image);
  std::map<std::string, double> out;
  for (const char* k : {"1", "5", "10"}) {
    out[std::string("text_to_image_r") + k] = m.at(std::string("t2i_r") + k);
    out[std::string("image_to_text_r") + k] = m.at(std::string("i2t_r") + k);
  }
  for (const char* k : {"modality_gap", "modality_gap_l2", "alignment", "uniformity"}) out[k] = m.at(k);
  return out;
}

EvalReport run_eval_suite(const PreparedEvalSuite& suite, Embedder& embedder, const EvalCallbacks& callbacks,
                          const EvalRunOptions& options) {
  ZeroShotClassifierCache own_cache;
  ZeroShotClassifierCache& cache = options.cache != nullptr ? *options.cache : own_cache;
  EvalReport report;
  report.suite = suite.name;
  const int64_t total = suite.total_items();
  int64_t finished = 0;  // items of the tasks done so far

  for (size_t ti = 0; ti < suite.tasks.size(); ++ti) {
    const PreparedEvalTask& task = suite.tasks[ti];
    const auto t0 = Clock::now();
    auto progress_for = [&](const char* phase, int64_t base) {
      return [&, phase, base](int64_t done) {
        if (callbacks.on_progress) {
          callbacks.on_progress(EvalProgress{ti, task.spec.name, phase, finished + base + done, total});
        }
        check_stop(callbacks);
      };
    };
    check_stop(callbacks);
    EvalTaskReport r;
    r.name = task.spec.name;
    r.kind = task.spec.kind;
    r.data = task.spec.data;
    r.n = task.images();
    try {
      if (task.spec.kind == EvalKind::kZeroShot) {
        bool built = false;
        const auto tc = Clock::now();
        const at::Tensor classifier = cache.get_or_build(options.model_key, embedder, task.class_names, task.templates,
                                                         progress_for("texts", 0), &built);
        const double classifier_seconds = seconds_since(tc);
        std::vector<std::string> paths;
        std::vector<int64_t> labels;
        paths.reserve(task.classes.items.size());
        for (const auto& item : task.classes.items) {
          paths.push_back(item.image_path);
          labels.push_back(item.label);
        }
        const auto ti0 = Clock::now();
        const at::Tensor features = embedder.embed_image_files(paths, progress_for("images", task.texts()));
        const double image_seconds = seconds_since(ti0);
        r.images_per_second = image_seconds > 0 ? static_cast<double>(paths.size()) / image_seconds : 0;
        const ZeroShotResult z = evaluate_zeroshot(features, labels, classifier);
        r.metrics = {{"top1", z.top1}, {"top5", z.top5}, {"mean_per_class_recall", z.mean_per_class_recall}};
        json per_class = json::array();
        for (size_t c = 0; c < z.per_class.size(); ++c) {
          const ClassAccuracy& pc = z.per_class[c];
          if (pc.images == 0) continue;
          per_class.push_back({{"id", c},
                               {"name", task.class_names[c]},
                               {"images", pc.images},
                               {"accuracy", static_cast<double>(pc.correct) / static_cast<double>(pc.images)}});
        }
        json confusions = json::array();
        for (const Confusion& cf : z.confusions) {
          confusions.push_back({{"true", task.class_names[static_cast<size_t>(cf.true_class)]},
                                {"predicted", task.class_names[static_cast<size_t>(cf.predicted_class)]},
                                {"count", cf.count}});
        }
        r.details = {{"protocol", task.templates.size() == 1 ? "single prompt" : "template ensemble"},
                     {"templates", task.templates.size() == 1 ? json(task.templates[0]) : json(task.templates.size())},
                     {"classes", task.class_names.size()},
                     {"classifier_seconds", classifier_seconds},
                     {"classifier_cached", !built},
                     {"per_class", per_class},
                     {"confusions", confusions}};
      } else {
        std::vector<std::string> paths, captions;
        std::vector<int64_t> text_image;
        for (size_t i = 0; i < task.captions.items.size(); ++i) {
          const auto& item = task.captions.items[i];
          paths.push_back(item.image_path);
          for (const auto& c : item.captions) {
            captions.push_back(c);
            text_image.push_back(static_cast<int64_t>(i));
          }
        }
        const at::Tensor text_features = embedder.embed_texts(captions, progress_for("texts", 0));
        const auto ti0 = Clock::now();
        const at::Tensor image_features =
            embedder.embed_image_files(paths, progress_for("images", static_cast<int64_t>(captions.size())));
        const double image_seconds = seconds_since(ti0);
        r.images_per_second = image_seconds > 0 ? static_cast<double>(paths.size()) / image_seconds : 0;
        r.metrics = retrieval_metrics(image_features, text_features, text_image);
        r.details = {{"images", paths.size()}, {"captions", captions.size()}};
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kCancelled) throw;
      rethrow_for_task(task.spec.name, e);
    } catch (const std::exception& e) {
      rethrow_for_task(task.spec.name, e);
    }
    r.seconds = seconds_since(t0);
    finished += task.images() + task.texts();
    if (callbacks.on_task) callbacks.on_task(r);
    report.tasks.push_back(std::move(r));
  }

  // The averages the paper reports.
  double top1 = 0, top5 = 0, t2i = 0, i2t = 0;
  int zeroshot = 0, retrieval = 0;
  for (const auto& t : report.tasks) {
    if (t.kind == EvalKind::kZeroShot) {
      top1 += t.metrics.at("top1");
      top5 += t.metrics.at("top5");
      ++zeroshot;
    } else {
      t2i += t.metrics.at("text_to_image_r1");
      i2t += t.metrics.at("image_to_text_r1");
      ++retrieval;
    }
  }
  report.summary["zeroshot_tasks"] = zeroshot;
  report.summary["retrieval_tasks"] = retrieval;
  if (zeroshot > 0) {
    report.summary["mean_zeroshot_top1"] = top1 / zeroshot;
    report.summary["mean_zeroshot_top5"] = top5 / zeroshot;
  }
  if (retrieval > 0) {
    report.summary["mean_text_to_image_r1"] = t2i / retrieval;
    report.summary["mean_image_to_text_r1"] = i2t / retrieval;
  }
  return report;
}

json eval_report_to_json(const EvalReport& report) {
  json tasks = json::array();
  for (const auto& t : report.tasks) {
    tasks.push_back({{"name", t.name},
                     {"kind", eval_kind_name(t.kind)},
                     {"data", t.data},
                     {"n", t.n},
                     {"metrics", t.metrics},
                     {"seconds", t.seconds},
                     {"images_per_second", t.images_per_second},
                     {"details", t.details}});
  }
  return {{"suite", report.suite}, {"tasks", tasks}, {"summary", report.summary}};
}

}  // namespace refinery
