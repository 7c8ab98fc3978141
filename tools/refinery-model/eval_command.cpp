// `refinery-model eval`: zero-shot classification and retrieval benchmarks
// of a checkpoint, one task from flags or a suite file (core/eval/eval_suite.h),
// printed as a table or as the report JSON. Only builds with the I/O front
// ends.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/embedding/embedder.h"
#include "core/eval/eval_suite.h"
#include "core/runtime/torch_runtime.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct EvalParams {
  std::string checkpoint, suite, task, data, dataset, classnames, prompt, templates, name, output;
  std::vector<std::string> classes;
  bool json_output = false;
  int batch = 64;
  int decode_workers = 0;
  std::string precision = "fp32";
};

EvalSuiteSpec suite_from_flags(const EvalParams& p) {
  if (!p.suite.empty()) {
    if (!p.task.empty() || !p.data.empty()) throw invalid_argument("give --suite FILE or --task/--data, not both");
    return load_eval_suite_file(p.suite);
  }
  if (p.task.empty() || p.data.empty()) {
    throw invalid_argument("give --suite FILE, or --task zeroshot|retrieval with --data SPEC");
  }
  json task = {{"kind", p.task}, {"data", p.data}};
  if (!p.name.empty()) task["name"] = p.name;
  if (!p.dataset.empty()) task["dataset"] = p.dataset;
  if (!p.classnames.empty()) task["classnames"] = p.classnames;
  if (!p.classes.empty()) task["classes"] = p.classes;
  if (!p.prompt.empty()) task["prompt"] = p.prompt;
  if (!p.templates.empty()) task["templates"] = p.templates;
  return parse_eval_suite(json{{"name", p.name.empty() ? p.task : p.name}, {"tasks", json::array({task})}}, "flags");
}

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", 100.0 * v);
  return buf;
}

void print_table(const EvalReport& report) {
  std::printf("suite %s\n", report.suite.c_str());
  for (const auto& t : report.tasks) {
    std::printf("\n%s (%s, %s): %lld images, %.1f s, %.1f images/s\n", t.name.c_str(), eval_kind_name(t.kind),
                t.data.c_str(), static_cast<long long>(t.n), t.seconds, t.images_per_second);
    if (t.kind == EvalKind::kZeroShot) {
      std::printf("  top-1 %s%%   top-5 %s%%   mean per-class recall %s%%   (%s, %lld classes)\n",
                  percent(t.metrics.at("top1")).c_str(), percent(t.metrics.at("top5")).c_str(),
                  percent(t.metrics.at("mean_per_class_recall")).c_str(),
                  t.details.value("protocol", "").c_str(), static_cast<long long>(t.details.value("classes", 0)));
      const json& confusions = t.details["confusions"];
      for (size_t i = 0; i < confusions.size() && i < 3; ++i) {
        std::printf("  confused: %s -> %s (%lld)\n", confusions[i]["true"].get<std::string>().c_str(),
                    confusions[i]["predicted"].get<std::string>().c_str(),
                    static_cast<long long>(confusions[i]["count"].get<int64_t>()));
      }
    } else {
      std::printf("  text->image R@1 %s%%  R@5 %s%%  R@10 %s%%\n", percent(t.metrics.at("text_to_image_r1")).c_str(),
                  percent(t.metrics.at("text_to_image_r5")).c_str(), percent(t.metrics.at("text_to_image_r10")).c_str());
      std::printf("  image->text R@1 %s%%  R@5 %s%%  R@10 %s%%\n", percent(t.metrics.at("image_to_text_r1")).c_str(),
                  percent(t.metrics.at("image_to_text_r5")).c_str(), percent(t.metrics.at("image_to_text_r10")).c_str());
      std::printf("  modality gap %.4f (L2 %.4f)   alignment %.4f   uniformity %.4f\n", t.metrics.at("modality_gap"),
                  t.metrics.at("modality_gap_l2"), t.metrics.at("alignment"), t.metrics.at("uniformity"));
    }
  }
  const auto& s = report.summary;
  if (s.count("mean_zeroshot_top1")) {
    std::printf("\nmean zero-shot top-1 over %d task(s): %s%%\n", static_cast<int>(s.at("zeroshot_tasks")),
                percent(s.at("mean_zeroshot_top1")).c_str());
  }
  if (s.count("mean_text_to_image_r1")) {
    std::printf("mean R@1 over %d retrieval task(s): text->image %s%%, image->text %s%%\n",
                static_cast<int>(s.at("retrieval_tasks")), percent(s.at("mean_text_to_image_r1")).c_str(),
                percent(s.at("mean_image_to_text_r1")).c_str());
  }
}

// Writes next to the target and renames, so a failed run leaves no half file.
void write_report(const std::string& path, const json& report) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw invalid_argument("cannot write " + path);
    out << report.dump(2) << "\n";
    if (!out.flush()) throw invalid_argument("cannot write " + path);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw invalid_argument("cannot write " + path + ": " + ec.message());
}

int run_eval(const EvalParams& p, const CommonParams& common) {
  const EvalSuiteSpec spec = suite_from_flags(p);
  // Every data set is read and checked before the model loads.
  const PreparedEvalSuite suite = prepare_eval_suite(spec);
  setup_runtime(common);
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common));
  EmbedderOptions o;
  o.batch_size = p.batch;
  o.precision = parse_inference_precision(p.precision);
  o.decode_workers = p.decode_workers;
  Embedder embedder(model, resolve_device(common.device), o);

  // One bar over the whole suite: items (images + texts) of every task.
  ProgressBar bar(0, progress_options(common, "evaluating", "items"));
  EvalCallbacks cb;
  cb.on_progress = [&bar](const EvalProgress& e) {
    bar.set_total(e.total);
    bar.set_label(e.task_name + " (" + e.phase + ")");
    bar.update(e.done);
  };
  EvalRunOptions run_options;
  run_options.model_key = p.checkpoint;
  const EvalReport report = run_eval_suite(suite, embedder, cb, run_options);
  bar.set_label("evaluated " + std::to_string(report.tasks.size()) + " task(s)");
  bar.finish();
  json j = eval_report_to_json(report);
  j["checkpoint"] = p.checkpoint;
  if (!p.output.empty()) write_report(p.output, j);
  if (p.json_output) {
    std::cout << j.dump() << "\n";
  } else {
    print_table(report);
  }
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<EvalParams>();
  EvalParams& p = *params;
  auto* cmd = app.add_subcommand("eval", "Zero-shot classification and retrieval benchmarks of a checkpoint");
  cmd->add_option("--checkpoint", p.checkpoint, "CKPT")->required();
  cmd->add_option("--suite", p.suite, "Suite file (JSON: {\"name\", \"tasks\": [...]})");
  cmd->add_option("--task", p.task, "zeroshot or retrieval (one task from flags)");
  cmd->add_option("--data", p.data,
                  "zeroshot: folder:DIR | csv:FILE (filepath,label); retrieval: coco:ANN.json:IMAGES | csv:FILE | jsonl:FILE");
  cmd->add_option("--name", p.name, "Task name in the report");
  cmd->add_option("--dataset", p.dataset, "Class names (by class id) of this data set of zeroshot_prompts.json");
  cmd->add_option("--classnames", p.classnames,
                  "Class names file: JSON {folder: name}, JSON array by class id, or one name per line");
  cmd->add_option("--classes", p.classes, "Class subset (ids or names) of --dataset/--classnames, in data order")
      ->delimiter(',');
  cmd->add_option("--prompt", p.prompt, "One prompt template (default \"a photo of {}\")");
  cmd->add_option("--templates", p.templates, "A template ensemble: JSON file, or a data set name (ImageNet: CLIP's 80)");
  cmd->add_flag("--json", p.json_output, "Print the report as one JSON object");
  cmd->add_option("--output", p.output, "Also write the report JSON to this file");
  cmd->add_option("--batch", p.batch, "Items per forward pass")->capture_default_str();
  cmd->add_option("--precision", p.precision, "fp32, bf16 (autocast: bf16 matmuls, fp32 weights) or int8 (linear layers quantized dynamically; CPU)")
      ->capture_default_str();
  cmd->add_option("--decode-workers", p.decode_workers, "Image decode threads (0 = all cores)")->capture_default_str();
  add_common(cmd, command.common, true);
  cmd->callback([&command, params] {
    command.run = [&command, params] { return run_eval(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
