#include "core/refine/refine_trainer.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include <torch/torch.h>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/data/epoch_plan.h"
#include "core/data/training_data_loader.h"
#include "core/distributed/process_group.h"
#include "core/eval/alignment_metrics.h"
#include "core/runtime/autocast_guard.h"
#include "core/text/bpe_tokenizer.h"
#include "core/train/adamw.h"
#include "core/train/rafa_loss.h"
#include "core/train/refine_objective.h"
#include "core/train/refine_step.h"
#include "core/train/training_precision.h"

namespace refinery {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Evaluation noise must not depend on the training step it happens at, and
// must differ from every training step's noise.
constexpr uint64_t kEvalSeedSalt = 0x5eed0e7a1ULL;

ImagePreprocessorOptions preprocess_options(const ClipConfig& config) {
  ImagePreprocessorOptions o;
  o.size = static_cast<int>(config.vision.image_size);
  return o;
}

}  // namespace

struct RefineTrainer::State {
  DatasetSplit split;
  std::unique_ptr<EpochPlan> plan;
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<RefineStep> step;
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  // Validation: every caption of every validation image.
  std::vector<std::string> val_paths;
  torch::Tensor val_tokens;              // [M, L] int64
  std::vector<int64_t> val_text_image;   // text -> index into val_paths
  std::vector<int64_t> val_first_text;   // image -> its first caption (for the validation loss)
  torch::Tensor teacher_val_images, teacher_val_texts;  // cached: the teacher never changes
};

RefineTrainer::RefineTrainer(ClipModel base, std::shared_ptr<const CaptionDataset> data, RefineOptions options,
                             c10::Device device, std::string checkpoint_dir, ProcessGroup* group)
    : student_(std::move(base)),
      data_(std::move(data)),
      options_(std::move(options)),
      device_(device),
      checkpoint_dir_(std::move(checkpoint_dir)),
      state_(std::make_unique<State>()),
      group_(group != nullptr && group->world_size() > 1 ? group : nullptr) {
  options_.validate();
  if (group_ && options_.batch_size % group_->world_size() != 0) {
    throw invalid_argument("batch_size " + std::to_string(options_.batch_size) + " does not divide into " +
                           std::to_string(group_->world_size()) + " equal slices, one per rank: use a multiple of " +
                           std::to_string(group_->world_size()));
  }
  if (!data_ || data_->items.empty()) throw invalid_argument("the data set has no images");
  check_training_precision(options_.precision, device_);
  bf16_ = options_.precision == TrainingPrecision::kBFloat16;

  // fp32 master weights whatever the checkpoint held.
  student_->to(device_, torch::kFloat32);
  if (needs_teacher(options_.objective.method)) {
    teacher_ = ClipModel(student_->config());
    load_state_dict_strict(teacher_, model_state_dict(student_), "the base model");
    teacher_->to(device_, torch::kFloat32);
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.set_requires_grad(false);
  }
  for (auto& p : student_->named_parameters(/*recurse=*/true)) {
    p.value().set_requires_grad(true);
    state_->parameters.emplace_back(p.key(), p.value());
  }
  state_->optimizer = std::make_unique<AdamW>(
      state_->parameters,
      AdamWOptions().beta1(options_.beta1).beta2(options_.beta2).eps(options_.eps).weight_decay(options_.weight_decay));

  state_->step =
      std::make_unique<RefineStep>(student_, teacher_, *state_->optimizer, options_, device_, bf16_, group_);

  state_->split = split_dataset(data_->items.size(), options_.val_fraction, options_.split_seed);
  std::vector<int32_t> caption_counts;
  caption_counts.reserve(data_->items.size());
  for (const auto& item : data_->items) caption_counts.push_back(static_cast<int32_t>(item.captions.size()));
  state_->plan = std::make_unique<EpochPlan>(state_->split.train, caption_counts, options_.batch_size, options_.seed);
  total_steps_ = state_->plan->steps_per_epoch() * options_.epochs;
  if (options_.max_steps > 0) total_steps_ = std::min(total_steps_, options_.max_steps);

  // Validation texts are tokenized once.
  std::vector<std::string> texts;
  for (int64_t item : state_->split.val) {
    const auto& ci = data_->items[static_cast<size_t>(item)];
    const int64_t image_index = static_cast<int64_t>(state_->val_paths.size());
    state_->val_paths.push_back(ci.image_path);
    state_->val_first_text.push_back(static_cast<int64_t>(texts.size()));
    for (const auto& caption : ci.captions) {
      texts.push_back(caption);
      state_->val_text_image.push_back(image_index);
    }
  }
  if (!texts.empty()) {
    const int context = static_cast<int>(student_->config().text.context_length);
    std::vector<int32_t> ids = BpeTokenizer::default_instance().tokenize_batch(texts, context, /*truncate=*/true);
    state_->val_tokens =
        torch::from_blob(ids.data(), {static_cast<int64_t>(texts.size()), context}, torch::kInt32).to(torch::kInt64);
  }
}

RefineTrainer::~RefineTrainer() = default;

int64_t RefineTrainer::steps_per_epoch() const { return state_->plan->steps_per_epoch(); }
size_t RefineTrainer::train_images() const { return state_->split.train.size(); }
size_t RefineTrainer::val_images() const { return state_->split.val.size(); }

bool RefineTrainer::writes() const { return group_ == nullptr || group_->rank() == 0; }

void RefineTrainer::sum_over_ranks(std::vector<int64_t>& values) {
  if (!group_ || values.empty()) return;
  std::vector<at::Tensor> t = {torch::tensor(values, torch::kInt64).to(device_)};
  group_->all_reduce_sum(t);
  const at::Tensor cpu = t[0].to(torch::kCPU);
  for (size_t i = 0; i < values.size(); ++i) values[i] = cpu[static_cast<int64_t>(i)].item<int64_t>();
}

int64_t RefineTrainer::restore(const TrainerCallbacks& callbacks) {
  State& s = *state_;
  int64_t start_step = 0;
  std::optional<TrainingCheckpointInfo> latest;
  if (writes()) latest = TrainingCheckpoint::latest(checkpoint_dir_);
  if (latest) {
    TrainingCheckpoint::load(*latest, student_, *s.optimizer);
    start_step = latest->step;
    images_skipped_ = latest->images_skipped;
    if (callbacks.on_log) {
      callbacks.on_log("resuming from " + latest->path + " (step " + std::to_string(start_step) + " of " +
                       std::to_string(total_steps_) + ")");
    }
  }
  if (group_) {
    // Rank 0's word: where to start, and (as DDP does) the weights, so that
    // every rank starts from the same bits; after a checkpoint also AdamW's
    // moments and step counts.
    torch::NoGradGuard no_grad;
    at::Tensor header = torch::tensor({start_step, images_skipped_, static_cast<int64_t>(latest.has_value())},
                                      torch::kInt64)
                            .to(device_);
    group_->broadcast(header, 0);
    header = header.to(torch::kCPU);
    start_step = header[0].item<int64_t>();
    images_skipped_ = header[1].item<int64_t>();
    const bool resumed = header[2].item<int64_t>() != 0;
    std::vector<AdamW::Param>& params = s.optimizer->params();
    for (auto& p : params) group_->broadcast(p.value, 0);
    if (resumed) {
      // Step counts: one per parameter, then the optimizer's.
      std::vector<int64_t> counts;
      for (const auto& p : params) counts.push_back(p.steps);
      counts.push_back(s.optimizer->steps());
      at::Tensor steps = torch::tensor(counts, torch::kInt64).to(device_);
      group_->broadcast(steps, 0);
      steps = steps.to(torch::kCPU);
      for (size_t i = 0; i < params.size(); ++i) {
        group_->broadcast(params[i].exp_avg, 0);
        group_->broadcast(params[i].exp_avg_sq, 0);
        params[i].steps = steps[static_cast<int64_t>(i)].item<int64_t>();
      }
      s.optimizer->set_steps(steps[static_cast<int64_t>(params.size())].item<int64_t>());
      if (!writes() && callbacks.on_log) {
        callbacks.on_log("resuming at step " + std::to_string(start_step) + " of " + std::to_string(total_steps_) +
                         " with rank 0's checkpoint");
      }
    }
  }
  if (start_step > 0) last_checkpoint_step_ = start_step;
  return start_step;
}

void RefineTrainer::checkpoint(int64_t step, const TrainerCallbacks& callbacks) {
  if (step == last_checkpoint_step_) return;
  if (!writes()) {
    last_checkpoint_step_ = step;
    return;
  }
  nlohmann::json extra = {{"total_steps", total_steps_}, {"method", refine_method_name(options_.objective.method)}};
  TrainingCheckpointInfo written =
      TrainingCheckpoint::save(checkpoint_dir_, step, images_skipped_, student_, *state_->optimizer, extra);
  last_checkpoint_step_ = step;
  std::vector<TrainingCheckpointInfo> removed = TrainingCheckpoint::prune(checkpoint_dir_, options_.keep_checkpoints);
  if (callbacks.on_checkpoint) callbacks.on_checkpoint(written, removed);
}

std::map<std::string, double> RefineTrainer::evaluate(const TrainerCallbacks& callbacks) {
  State& s = *state_;
  std::map<std::string, double> metrics;
  if (s.val_paths.empty()) return metrics;
  torch::NoGradGuard no_grad;
  student_->eval();
  AutocastGuard autocast(device_.type(), bf16_);
  const ImagePreprocessorOptions pre = preprocess_options(student_->config());
  const int64_t chunk = std::max(1, options_.eval_batch_size);
  const bool cache_teacher = teacher_ && !s.teacher_val_images.defined();

  std::vector<torch::Tensor> student_images, teacher_images;
  std::vector<int64_t> kept_all;
  for (size_t begin = 0; begin < s.val_paths.size(); begin += static_cast<size_t>(chunk)) {
    if (callbacks.should_stop && callbacks.should_stop()) return {};
    const size_t end = std::min(s.val_paths.size(), begin + static_cast<size_t>(chunk));
    std::vector<std::string> paths(s.val_paths.begin() + static_cast<std::ptrdiff_t>(begin),
                                   s.val_paths.begin() + static_cast<std::ptrdiff_t>(end));
    std::vector<int64_t> kept;
    std::vector<std::string> failed;
    torch::Tensor pixels = load_images(paths, pre, options_.data_workers, &kept, &failed);
    for (const auto& f : failed) {
      if (callbacks.on_log) callbacks.on_log("validation image skipped: " + f);
    }
    for (int64_t k : kept) kept_all.push_back(static_cast<int64_t>(begin) + k);
    if (kept.empty()) continue;
    pixels = pixels.to(device_);
    student_images.push_back(student_->encode_image(pixels).to(torch::kCPU, torch::kFloat32));
    if (cache_teacher) teacher_images.push_back(teacher_->encode_image(pixels).to(torch::kCPU, torch::kFloat32));
  }
  if (kept_all.empty()) throw invalid_argument("no validation image could be decoded");

  // Texts whose image decoded, re-indexed onto the kept images.
  std::vector<int64_t> image_slot(s.val_paths.size(), -1);
  for (size_t i = 0; i < kept_all.size(); ++i) image_slot[static_cast<size_t>(kept_all[i])] = static_cast<int64_t>(i);
  std::vector<int64_t> text_rows, text_image;
  for (size_t t = 0; t < s.val_text_image.size(); ++t) {
    const int64_t slot = image_slot[static_cast<size_t>(s.val_text_image[t])];
    if (slot < 0) continue;
    text_rows.push_back(static_cast<int64_t>(t));
    text_image.push_back(slot);
  }
  std::vector<torch::Tensor> student_texts, teacher_texts;
  const bool cache_teacher_texts = teacher_ && !s.teacher_val_texts.defined();
  for (int64_t begin = 0; begin < static_cast<int64_t>(s.val_text_image.size()); begin += chunk) {
    if (callbacks.should_stop && callbacks.should_stop()) return {};
    const int64_t end = std::min<int64_t>(static_cast<int64_t>(s.val_text_image.size()), begin + chunk);
    torch::Tensor tokens = s.val_tokens.slice(0, begin, end).to(device_);
    student_texts.push_back(student_->encode_text(tokens).to(torch::kCPU, torch::kFloat32));
    if (cache_teacher_texts) teacher_texts.push_back(teacher_->encode_text(tokens).to(torch::kCPU, torch::kFloat32));
  }
  torch::Tensor f_images = torch::cat(student_images);
  torch::Tensor all_texts = torch::cat(student_texts);
  if (cache_teacher) s.teacher_val_images = torch::cat(teacher_images);
  if (cache_teacher_texts) s.teacher_val_texts = torch::cat(teacher_texts);
  torch::Tensor rows = torch::tensor(text_rows, torch::kInt64);
  torch::Tensor f_texts = all_texts.index_select(0, rows);

  metrics = alignment_metrics(f_images, f_texts, text_image);

  // Validation loss: the training objective on (image, first caption) pairs
  // in batches of the training batch size, with fixed prior samples.
  std::vector<int64_t> first_rows;
  for (size_t i = 0; i < kept_all.size(); ++i) first_rows.push_back(s.val_first_text[static_cast<size_t>(kept_all[i])]);
  torch::Tensor first = torch::tensor(first_rows, torch::kInt64);
  torch::Tensor pair_texts = all_texts.index_select(0, first);
  torch::Tensor g_images, g_pair_texts;
  if (teacher_) {
    g_images = s.teacher_val_images;
    g_pair_texts = s.teacher_val_texts.index_select(0, first);
    if (g_images.size(0) != f_images.size(0)) g_images = torch::Tensor();  // a val image failed this time only
  }
  const int64_t n = f_images.size(0);
  const int64_t b = std::min<int64_t>(n, options_.batch_size);
  double loss_sum = 0, rafa_sum = 0, hycd_sum = 0;
  int64_t counted = 0;
  if (!teacher_ || g_images.defined()) {
    for (int64_t begin = 0; begin + b <= n; begin += b) {
      torch::Tensor fi = f_images.slice(0, begin, begin + b), ft = pair_texts.slice(0, begin, begin + b);
      torch::Tensor gi, gt, zi, zt;
      if (teacher_) {
        gi = g_images.slice(0, begin, begin + b);
        gt = g_pair_texts.slice(0, begin, begin + b);
      }
      if (needs_prior(options_.objective.method)) {
        std::tie(zi, zt) = sample_rafa_prior(options_.objective.rafa, b, fi.size(1), options_.seed ^ kEvalSeedSalt,
                                             begin / b, torch::kCPU);
      }
      ObjectiveTerms terms = compute_refine_objective(options_.objective, fi, ft, gi, gt, zi, zt,
                                                      student_->logit_scale.detach().to(torch::kCPU));
      loss_sum += terms.total.item<double>() * static_cast<double>(b);
      if (terms.rafa.defined()) rafa_sum += terms.rafa.item<double>() * static_cast<double>(b);
      if (terms.hycd.defined()) hycd_sum += terms.hycd.item<double>() * static_cast<double>(b);
      counted += b;
    }
  }
  if (counted > 0) {
    metrics["val_loss"] = loss_sum / static_cast<double>(counted);
    if (needs_prior(options_.objective.method)) metrics["val_loss_rafa"] = rafa_sum / static_cast<double>(counted);
    if (needs_teacher(options_.objective.method)) metrics["val_loss_hycd"] = hycd_sum / static_cast<double>(counted);
  }
  metrics["val_images"] = static_cast<double>(f_images.size(0));
  metrics["val_texts"] = static_cast<double>(f_texts.size(0));
  student_->train();
  last_metrics_ = metrics;
  return metrics;
}

TrainOutcome RefineTrainer::run(const TrainerCallbacks& callbacks) {
  State& s = *state_;
  const int64_t start_step = restore(callbacks);
  // Data parallel, the ranks stop together: each one's wish is summed with
  // the step's counts in one small all-reduce. Evaluation runs whole on
  // every rank (the same numbers everywhere) and does not poll mid-way.
  TrainerCallbacks local = callbacks;
  if (group_) local.should_stop = nullptr;
  auto wants_stop = [&] { return callbacks.should_stop && callbacks.should_stop(); };
  auto stop_requested = [&] {
    std::vector<int64_t> flag = {wants_stop() ? 1 : 0};
    sum_over_ranks(flag);
    return flag[0] > 0;
  };
  auto emit_eval = [&](int64_t step) {
    std::map<std::string, double> metrics = evaluate(local);
    if (stop_requested()) return false;
    if (!metrics.empty() && callbacks.on_eval) callbacks.on_eval(step, metrics);
    return true;
  };

  if (start_step == 0 && !s.val_paths.empty()) {
    if (!emit_eval(0)) return TrainOutcome::kStopped;
  }
  if (start_step >= total_steps_) return TrainOutcome::kFinished;

  DataLoaderOptions loader_options;
  loader_options.workers = options_.data_workers;
  loader_options.prefetch_batches = options_.prefetch_batches;
  loader_options.preprocess = preprocess_options(student_->config());
  loader_options.context_length = static_cast<int>(student_->config().text.context_length);
  if (group_) {
    loader_options.shard = group_->rank();
    loader_options.shards = group_->world_size();
  }
  TrainingDataLoader loader(*data_, *s.plan, start_step, total_steps_, loader_options);

  int64_t images_seen = start_step * options_.batch_size;
  double ema_step_seconds = 0;
  student_->train();
  for (int64_t step = start_step; step < total_steps_; ++step) {
    if (!group_ && wants_stop()) {
      loader.stop();
      checkpoint(step, callbacks);
      return TrainOutcome::kStopped;
    }
    const auto t0 = Clock::now();
    std::optional<TrainingBatch> batch = loader.next();
    if (!batch) throw internal_error("the data loader ended before step " + std::to_string(step + 1));
    const int64_t local_rows = batch->pixels.defined() ? batch->pixels.size(0) : 0;
    // {stop, rows, images skipped}: this rank's, then the sums.
    std::vector<int64_t> counts = {group_ && wants_stop() ? 1 : 0, local_rows,
                                   static_cast<int64_t>(batch->skipped.size())};
    const double comm_before = group_ ? group_->stats().seconds : 0.0;
    sum_over_ranks(counts);
    if (counts[0] > 0) {
      loader.stop();
      checkpoint(step, callbacks);
      return TrainOutcome::kStopped;
    }
    const int64_t rows = counts[1], skipped = counts[2];
    images_seen += rows + skipped;
    for (const auto& why : batch->skipped) {
      if (callbacks.on_log) callbacks.on_log("image skipped: " + why);
    }
    if (skipped > 0) {
      images_skipped_ += skipped;
      const double allowed = std::max(10.0, options_.max_skipped_fraction * static_cast<double>(images_seen));
      if (static_cast<double>(images_skipped_) > allowed) {
        std::ostringstream m;
        m << images_skipped_ << " of " << images_seen << " images failed to decode (more than "
          << options_.max_skipped_fraction * 100 << "% and 10)";
        if (!batch->skipped.empty()) m << "; last: " << batch->skipped.back();
        throw invalid_argument(m.str());
      }
    }
    StepReport report;
    report.step = step + 1;
    report.total_steps = total_steps_;
    report.epoch = batch->epoch;
    report.batch_rows = rows;
    report.data_seconds = batch->data_seconds;
    report.lr = options_.lr_at(step, total_steps_);
    report.loss = report.loss_rafa = report.loss_hycd = report.loss_contrastive = report.loss_align =
        std::numeric_limits<double>::quiet_NaN();
    if (rows > 0) {
      at::Tensor pixels = batch->pixels, tokens = batch->tokens;
      if (!pixels.defined()) {  // every image of this rank's slice failed; the others' rows still train
        const int64_t size = loader_options.preprocess.size;
        pixels = torch::empty({0, 3, size, size}, torch::kFloat32);
        tokens = torch::zeros({0, loader_options.context_length}, torch::kInt64);
      }
      const StepLosses losses = s.step->run(pixels, tokens, step, report.lr);
      report.loss = losses.total;
      report.loss_rafa = losses.rafa;
      report.loss_hycd = losses.hycd;
      report.loss_contrastive = losses.contrastive;
      report.loss_align = losses.align;
      if (!std::isfinite(report.loss)) {
        throw invalid_argument("the loss is not finite at step " + std::to_string(step + 1) +
                               " (lower the learning rate, or use fp32)");
      }
    }
    if (group_) report.communication_seconds = group_->stats().seconds - comm_before;
    report.step_seconds = seconds_since(t0);
    report.samples_per_second = report.step_seconds > 0 ? static_cast<double>(rows) / report.step_seconds : 0;
    ema_step_seconds = step == start_step ? report.step_seconds : 0.8 * ema_step_seconds + 0.2 * report.step_seconds;
    report.eta_seconds = ema_step_seconds * static_cast<double>(total_steps_ - step - 1);
    report.images_skipped = images_skipped_;
    if (callbacks.on_step) callbacks.on_step(report);

    const int64_t done = step + 1;
    if (callbacks.on_epoch_end && done % steps_per_epoch() == 0 && done < total_steps_) {
      callbacks.on_epoch_end(static_cast<int32_t>(done / steps_per_epoch()), done);
      if (stop_requested()) {
        loader.stop();
        checkpoint(done, callbacks);
        return TrainOutcome::kStopped;
      }
    }
    if (options_.checkpoint_every > 0 && done % options_.checkpoint_every == 0 && done < total_steps_) {
      checkpoint(done, callbacks);
    }
    if (options_.eval_every > 0 && done % options_.eval_every == 0 && done < total_steps_ && !s.val_paths.empty()) {
      if (!emit_eval(done)) {
        loader.stop();
        checkpoint(done, callbacks);
        return TrainOutcome::kStopped;
      }
    }
  }
  if (!s.val_paths.empty()) {
    if (!emit_eval(total_steps_)) {
      checkpoint(total_steps_, callbacks);
      return TrainOutcome::kStopped;
    }
  }
  return TrainOutcome::kFinished;
}

}  // namespace refinery
