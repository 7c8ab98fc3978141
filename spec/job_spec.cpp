#include "spec/job_spec.h"

#include <set>

#include "core/base/error.h"
#include "core/model/clip_config.h"

namespace refinery {
namespace {

constexpr int32_t kCpuMicroBatch = 32;
constexpr double kPretrainLr = 5e-4;
constexpr int32_t kMaxWorkers = 64;
const std::set<std::string> kExtraKeys = {"rafa_shared", "contrastive_normalize"};

bool parse_bool(const std::string& key, const std::string& value) {
  if (value == "true" || value == "1" || value == "yes") return true;
  if (value == "false" || value == "0" || value == "no") return false;
  throw invalid_argument("extra option " + key + "=" + value + ": expected true or false");
}

}  // namespace

v1::JobSpec with_defaults(const v1::JobSpec& in, int64_t default_checkpoint_every, bool cpu) {
  v1::JobSpec s = in;
  const RefineOptions d;  // the defaults live there
  const bool from_scratch = s.init() == "random";
  if (!s.init().empty() && !from_scratch) {
    throw invalid_argument("unknown init '" + s.init() + "': leave it empty (start from base_model) or 'random'");
  }
  if (from_scratch) {
    if (!s.base_model().empty()) throw invalid_argument("init=random pre-trains from scratch: leave base_model (--base) out");
    if (s.arch().empty()) throw invalid_argument("init=random needs arch (--arch tiny, ViT-B-32, ...)");
    builtin_architecture(s.arch());  // NOT_FOUND naming the known ones
    if (s.method().empty()) s.set_method("contrastive");
    if (s.method() != "contrastive") {
      throw invalid_argument("init=random pre-trains with the CLIP loss: method must be contrastive, got '" + s.method() +
                             "'");
    }
    if (s.lr() == 0) s.set_lr(kPretrainLr);
    if (s.schedule().empty()) s.set_schedule("cosine");
  } else if (!s.arch().empty()) {
    throw invalid_argument("arch is for init=random; a refine job takes its architecture from base_model");
  }
  if (s.method().empty()) s.set_method(refine_method_name(d.objective.method));
  const RefineMethod method = parse_refine_method(s.method());
  s.set_method(refine_method_name(method));
  if (s.epochs() == 0) s.set_epochs(d.epochs);
  if (s.batch_size() == 0) s.set_batch_size(static_cast<int32_t>(d.batch_size));
  if (s.lr() == 0) s.set_lr(d.lr);
  if (!s.has_weight_decay()) s.set_weight_decay(d.weight_decay);
  if (!s.has_alpha()) s.set_alpha(method == RefineMethod::kSelfKd ? 0.0 : d.objective.hycd.alpha);
  if (!s.has_lambda_rafa()) s.set_lambda_rafa(d.objective.lambda_rafa);
  if (!s.has_lambda_hycd()) s.set_lambda_hycd(d.objective.lambda_hycd);
  if (s.temperature() == 0) s.set_temperature(d.objective.hycd.temperature);
  if (!s.has_rafa_mu()) s.set_rafa_mu(d.objective.rafa.mu);
  if (!s.has_rafa_sigma()) s.set_rafa_sigma(d.objective.rafa.sigma);
  if (s.rafa_prior().empty()) s.set_rafa_prior("normal");
  if (s.schedule().empty()) s.set_schedule(lr_schedule_name(d.schedule));
  if (!s.has_seed()) s.set_seed(d.seed);
  if (!s.has_val_fraction()) s.set_val_fraction(d.val_fraction);
  if (s.checkpoint_every() == 0) s.set_checkpoint_every(default_checkpoint_every);
  if (s.precision().empty()) s.set_precision(training_precision_name(d.precision));
  if (s.keep_checkpoints() == 0) s.set_keep_checkpoints(d.keep_checkpoints);
  // On CPU a ViT-B/32 step holds ~110 MB of activations per pair: batch 512
  // at once would need ~60 GB. Micro-batches of 32 give the same gradient.
  if (s.micro_batch_size() == 0 && cpu && s.batch_size() > kCpuMicroBatch) s.set_micro_batch_size(kCpuMicroBatch);
  for (const auto& [key, value] : s.extra()) {
    if (!kExtraKeys.count(key)) {
      throw invalid_argument("unknown extra option '" + key + "' (known: rafa_shared, contrastive_normalize)");
    }
    parse_bool(key, value);
  }
  if (s.max_steps() < 0) throw invalid_argument("invalid max_steps " + std::to_string(s.max_steps()) + ": must not be negative");
  if (s.data_workers() < 0) throw invalid_argument("invalid data_workers " + std::to_string(s.data_workers()));
  if (s.workers() < 0 || s.workers() > kMaxWorkers) {
    throw invalid_argument("invalid workers " + std::to_string(s.workers()) + ": from 1 to " + std::to_string(kMaxWorkers));
  }
  if (s.workers() > 1) {
    if (s.batch_size() % s.workers() != 0) {
      throw invalid_argument("batch_size " + std::to_string(s.batch_size()) + " does not divide into " +
                             std::to_string(s.workers()) + " workers' equal slices: use a multiple of " +
                             std::to_string(s.workers()));
    }
    if (!s.eval_at_epochs().empty()) {
      throw invalid_argument("eval_at_epochs is not supported with workers yet: run the epochs as separate jobs");
    }
  }
  if (!s.devices().empty()) {
    if (s.workers() < 2) throw invalid_argument("devices '" + s.devices() + "' is for jobs with workers (2 or more)");
    const std::vector<std::string> devices = split_devices(s.devices());
    if (static_cast<int>(devices.size()) != s.workers()) {
      throw invalid_argument("devices '" + s.devices() + "' names " + std::to_string(devices.size()) +
                             " devices for " + std::to_string(s.workers()) + " workers: give one per worker");
    }
    for (const auto& d : devices) {
      if (d != "cpu" && d.rfind("cuda", 0) != 0) {
        throw invalid_argument("devices: '" + d + "' is not cpu, cuda or cuda:N");
      }
    }
  }
  refine_options_from_spec(s).validate();
  return s;
}

RefineOptions refine_options_from_spec(const v1::JobSpec& s) {
  RefineOptions o;
  o.objective.method = parse_refine_method(s.method());
  o.epochs = s.epochs();
  o.max_steps = s.max_steps();
  o.batch_size = s.batch_size();
  o.micro_batch_size = s.micro_batch_size();
  o.lr = s.lr();
  o.weight_decay = s.weight_decay();
  o.objective.hycd.alpha = s.alpha();
  o.objective.hycd.temperature = s.temperature();
  o.objective.lambda_rafa = s.lambda_rafa();
  o.objective.lambda_hycd = s.lambda_hycd();
  o.objective.rafa.mu = s.rafa_mu();
  o.objective.rafa.sigma = s.rafa_sigma();
  o.objective.rafa.prior = parse_rafa_prior(s.rafa_prior());
  o.schedule = parse_lr_schedule(s.schedule());
  o.warmup_steps = s.warmup_steps();
  o.grad_clip = s.grad_clip();
  o.seed = s.seed();
  o.val_fraction = s.val_fraction();
  o.eval_every = s.eval_every();
  o.checkpoint_every = s.checkpoint_every();
  o.keep_checkpoints = s.keep_checkpoints();
  o.precision = parse_training_precision(s.precision());
  o.data_workers = s.data_workers();
  auto it = s.extra().find("rafa_shared");
  if (it != s.extra().end()) o.objective.rafa.shared = parse_bool(it->first, it->second);
  it = s.extra().find("contrastive_normalize");
  if (it != s.extra().end()) o.objective.contrastive.normalize = parse_bool(it->first, it->second);
  return o;
}

std::vector<std::string> split_devices(const std::string& devices) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= devices.size()) {
    size_t end = devices.find(',', begin);
    if (end == std::string::npos) end = devices.size();
    std::string d = devices.substr(begin, end - begin);
    d.erase(0, d.find_first_not_of(' '));
    d.erase(d.find_last_not_of(' ') + 1);
    if (d.empty()) throw invalid_argument("devices '" + devices + "' has an empty entry");
    out.push_back(d);
    begin = end + 1;
  }
  return out;
}

std::string derived_model_name(const std::string& base_name, const std::string& method) {
  return base_name + (method == "clip-refine" ? "-refined" : "-" + method);
}

std::string epoch_model_name(const std::string& name, int32_t epoch) {
  return name + "-epoch-" + std::to_string(epoch);
}

}  // namespace refinery
