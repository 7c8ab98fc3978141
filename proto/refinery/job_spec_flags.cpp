#include "refinery/job_spec_flags.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "core/base/error.h"

namespace refinery {
namespace {

using google::protobuf::FieldDescriptor;

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw not_found("cannot open '" + path + "': " + std::strerror(errno));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(path + ": not valid JSON: " + e.what());
  }
}

// Help of the JobSpec flags, defaults as in METHOD.md. A field missing here
// still gets its flag (with a plain help line) from the descriptor.
const std::map<std::string, std::string>& field_help() {
  static const std::map<std::string, std::string> help = {
      {"method", "clip-refine (default), contrastive, self-kd, hycd, rafa or hycd-align"},
      {"name", "Name of the resulting model (default: derived from the base model and method)"},
      {"epochs", "Passes over the data (default 1)"},
      {"max_steps", "Stop after this many optimizer steps (default: the epochs decide)"},
      {"batch_size", "Pairs per step; the softmax runs over the whole batch (default 512)"},
      {"lr", "AdamW learning rate (default 1e-6)"},
      {"weight_decay", "AdamW weight decay (default 0.1)"},
      {"alpha", "HyCD weight of the ground-truth identity vs the teacher (default 0.5)"},
      {"lambda_rafa", "Weight of the RaFA loss (default 1)"},
      {"lambda_hycd", "Weight of the HyCD loss (default 1)"},
      {"temperature", "HyCD distillation temperature (default 1)"},
      {"rafa_mu", "Mean of the RaFA prior (default 0)"},
      {"rafa_sigma", "Standard deviation of the RaFA prior (default 1)"},
      {"rafa_prior", "normal (default) or uniform"},
      {"schedule", "constant (default) or cosine"},
      {"warmup_steps", "Linear warm-up steps (default 0)"},
      {"grad_clip", "Clip the gradient norm at this value (default 0 = no clipping)"},
      {"seed", "Seed of the split, the sampling and the RaFA draws (default 42)"},
      {"val_fraction", "Share of the data held out for evaluation (default 0.01)"},
      {"eval_every", "Evaluate every N steps (default 0: only at the end)"},
      {"checkpoint_every", "Checkpoint every N steps (default: the server's)"},
      {"precision", "fp32 (default) or bf16 (refused where the device cannot run it)"},
      {"data_workers", "Image decoding threads (default: the server's cores)"},
      {"keep_checkpoints", "Checkpoints kept on disk (default 3)"},
      {"micro_batch_size", "Pairs per forward/backward pass within a step (default: all on CUDA, 32 on CPU)"},
      {"init", "random: pre-train a fresh --arch from scratch with the CLIP loss (no --base; lr 5e-4, cosine)"},
      {"workers", "Train as N processes on the server's host, data parallel over c10d (batch divisible by N)"},
      {"devices", "With --workers: one device per worker, cuda:0,cuda:1,... (default: the server's)"},
      {"arch", "With --init random: a built-in architecture (tiny, ViT-B-32, ViT-B-16, ...)"},
  };
  return help;
}

// Fields with a flag of their own name, set by reflection. base_model, data
// and extra have flags of their own, eval_suite is --eval-suite FILE, and
// kind and model belong to `refinery eval submit`.
bool is_plain_spec_field(const FieldDescriptor* f) {
  static const std::set<std::string> own = {"base_model", "data", "extra", "kind", "model", "eval_suite"};
  return !own.count(f->name()) && !f->is_repeated() && f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE;
}

std::string flag_name(const FieldDescriptor* f) {
  std::string name = f->name();
  std::replace(name.begin(), name.end(), '_', '-');
  return "--" + name;
}

// Sets `f` from the text of its flag (CLI11 has checked the type already;
// this re-checks the range, which its number check does not).
void set_field(v1::JobSpec& spec, const FieldDescriptor* f, const std::string& text) {
  const auto* r = spec.GetReflection();
  const std::string flag = flag_name(f);
  try {
    size_t used = 0;
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        const long long v = std::stoll(text, &used);
        if (v < INT32_MIN || v > INT32_MAX) throw std::out_of_range(flag);
        r->SetInt32(&spec, f, static_cast<int32_t>(v));
        break;
      }
      case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(&spec, f, std::stoll(text, &used)); break;
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64: {
        if (text.find('-') != std::string::npos) throw std::out_of_range(flag);
        const unsigned long long v = std::stoull(text, &used);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32) {
          if (v > UINT32_MAX) throw std::out_of_range(flag);
          r->SetUInt32(&spec, f, static_cast<uint32_t>(v));
        } else {
          r->SetUInt64(&spec, f, v);
        }
        break;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(&spec, f, std::stod(text, &used)); break;
      case FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(&spec, f, std::stof(text, &used)); break;
      case FieldDescriptor::CPPTYPE_BOOL: {
        if (text != "true" && text != "false") throw std::invalid_argument(flag);
        r->SetBool(&spec, f, text == "true");
        used = text.size();
        break;
      }
      case FieldDescriptor::CPPTYPE_STRING: r->SetString(&spec, f, text); used = text.size(); break;
      default: throw std::invalid_argument(flag);
    }
    if (used != text.size()) throw std::invalid_argument(flag);
  } catch (const std::logic_error&) {  // invalid_argument, out_of_range
    throw JobSpecFlagError(flag + ": '" + text + "' is not a valid " + f->cpp_type_name() + " for JobSpec." + f->name());
  }
}

// Makes sure a field that has presence (`optional` in the proto) reads as
// set even when its value is 0: re-setting a value sets its has-bit.
void mark_present(v1::JobSpec& spec, const FieldDescriptor* f) {
  if (!f->has_presence()) return;
  const auto* r = spec.GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: r->SetInt32(&spec, f, r->GetInt32(spec, f)); break;
    case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(&spec, f, r->GetInt64(spec, f)); break;
    case FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(&spec, f, r->GetUInt32(spec, f)); break;
    case FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(&spec, f, r->GetUInt64(spec, f)); break;
    case FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(&spec, f, r->GetDouble(spec, f)); break;
    case FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(&spec, f, r->GetFloat(spec, f)); break;
    case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(&spec, f, r->GetBool(spec, f)); break;
    case FieldDescriptor::CPPTYPE_STRING: r->SetString(&spec, f, r->GetString(spec, f)); break;
    default: break;
  }
}

// Reads JOB.json, an object of JobSpec fields by their proto names, into
// `spec`; adds the fields it sets (null ones do not count) to `given`.
void read_spec_file(const std::string& path, v1::JobSpec& spec, std::set<std::string>& given) {
  const auto j = read_json_file(path);
  if (!j.is_object()) {
    throw invalid_argument(path + ": must be a JSON object of JobSpec fields (base_model, data, method, ...)");
  }
  const auto* d = v1::JobSpec::descriptor();
  std::string unknown;
  for (const auto& [key, value] : j.items()) {
    const FieldDescriptor* f = d->FindFieldByName(key);
    for (int i = 0; f == nullptr && i < d->field_count(); ++i) {
      if (d->field(i)->json_name() == key) f = d->field(i);  // maxSteps, as the proto JSON parser allows
    }
    if (f == nullptr) {
      unknown += (unknown.empty() ? "'" : ", '") + key + "'";
    } else if (!value.is_null()) {
      given.insert(f->name());
    }
  }
  if (!unknown.empty()) {
    std::string known;
    for (int i = 0; i < d->field_count(); ++i) known += (i ? ", " : "") + d->field(i)->name();
    throw invalid_argument(path + ": unknown JobSpec field(s) " + unknown + " (known: " + known + ")");
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(j.dump(), &spec, options);
  if (!status.ok()) throw invalid_argument(path + ": not a valid JobSpec: " + std::string(status.message()));
  for (const auto& name : given) mark_present(spec, d->FindFieldByName(name));
}

}  // namespace

struct JobSpecFlags::Values {
  std::string base, data, file, eval_suite_file;
  std::map<std::string, std::string> text;  // JobSpec field -> its flag's text
  std::vector<std::pair<std::string, CLI::Option*>> options;
  std::vector<std::string> extra;  // KEY=VALUE
  std::vector<int32_t> eval_at_epochs;
};

JobSpecFlags::JobSpecFlags() : values_(std::make_shared<Values>()) {}

void JobSpecFlags::add_to(CLI::App* app, const std::string& group, const std::set<std::string>& leave_out) {
  Values& v = *values_;
  v.options.emplace_back("base_model", app->add_option("--base", v.base, "Model to refine (required unless in --file)"));
  v.options.emplace_back(
      "data", app->add_option("--data", v.data,
                              "Training data: coco:ANNOTATIONS.json:IMAGE_DIR, csv:FILE or jsonl:FILE "
                              "(required unless in --file)"));
  const auto* d = v1::JobSpec::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (!is_plain_spec_field(f) || leave_out.count(f->name())) continue;
    const auto it = field_help().find(f->name());
    const std::string help = it != field_help().end() ? it->second : "JobSpec." + f->name();
    std::string& value = v.text[f->name()];
    auto* opt = app->add_option(flag_name(f), value, help)->group(group);
    // Unnamed validators: the help shows "--epochs INT", not "TEXT:INT".
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: opt->type_name("INT")->check(CLI::TypeValidator<int32_t>("")); break;
      case FieldDescriptor::CPPTYPE_INT64: opt->type_name("INT")->check(CLI::TypeValidator<int64_t>("")); break;
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64: opt->type_name("UINT")->check(CLI::TypeValidator<uint64_t>("")); break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: opt->type_name("FLOAT")->check(CLI::TypeValidator<double>("")); break;
      default: break;
    }
    v.options.emplace_back(f->name(), opt);
  }
  app->add_option("--extra", v.extra, "KEY=VALUE method-specific option (repeatable), e.g. rafa_shared=false")
      ->group(group);
  app->add_option("--file", v.file,
                  "JSON object of JobSpec fields by their proto names (base_model, data, max_steps, ...); "
                  "flags override it");
  if (!leave_out.count("eval_suite")) {
    app->add_option("--eval-suite", v.eval_suite_file,
                    "Evaluation suite (JSON file, as for `refinery-model eval --suite`) run on the base before the "
                    "first step and on the result at the end");
  }
  if (!leave_out.count("eval_at_epochs")) {
    app->add_option("--eval-at-epochs", v.eval_at_epochs,
                    "E1,E2,...: also take the model at the end of these epochs (NAME-epoch-E) and, with "
                    "--eval-suite, evaluate it")
        ->delimiter(',')
        ->type_name("EPOCHS");
  }
}

v1::JobSpec JobSpecFlags::spec() const {
  const Values& p = *values_;
  v1::JobSpec spec;
  std::set<std::string> given;
  if (!p.file.empty()) read_spec_file(p.file, spec, given);
  const auto* d = v1::JobSpec::descriptor();
  for (const auto& [name, opt] : p.options) {
    if (opt->count() == 0) continue;
    const std::string& text = name == "base_model" ? p.base : name == "data" ? p.data : p.text.at(name);
    const FieldDescriptor* f = d->FindFieldByName(name);
    set_field(spec, f, text);
    mark_present(spec, f);
  }
  for (const auto& arg : p.extra) {
    const size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) throw JobSpecFlagError("--extra expects KEY=VALUE, got '" + arg + "'");
    (*spec.mutable_extra())[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  if (!p.eval_suite_file.empty()) spec.set_eval_suite(read_json_file(p.eval_suite_file).dump());
  if (!p.eval_at_epochs.empty()) {
    spec.clear_eval_at_epochs();
    for (int32_t e : p.eval_at_epochs) spec.add_eval_at_epochs(e);
  }
  return spec;
}

}  // namespace refinery
