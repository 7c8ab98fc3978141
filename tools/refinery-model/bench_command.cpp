// `refinery-model bench`: forward or training-step throughput of a
// checkpoint, or the machine's fp32 matmul peak.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sys/resource.h>
#include <thread>
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define REFINERY_HAVE_CUDA_ALLOCATOR 1
#endif

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/runtime/autocast_guard.h"
#include "core/runtime/inference_precision.h"
#include "core/runtime/torch_runtime.h"
#include "core/train/adamw.h"
#include "core/train/refine_step.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct BenchParams {
  std::string checkpoint, modality = "image", texts_file;
  std::string method = "clip-refine", precision = "fp32";  // --modality train
  int micro_batch = 0;
  int batch = 32, warmup = 2, iterations = 0, text_tokens = 77, matmul_size = 2048;
  int parallel_passes = 1;  // image, text on a CPU: passes side by side, as refineryd's --parallel-passes
  double seconds = 10.0;
  bool json_output = false;
};

// Synthetic tokens: SOT, `length - 2` ordinary ids, EOT; the cost of a text
// depends only on where its EOT is.
at::Tensor synthetic_tokens(int64_t batch, int context_length, int length) {
  auto tokens = torch::zeros({batch, context_length}, torch::kInt);
  tokens.select(1, 0).fill_(49406);
  if (length > 2) tokens.narrow(1, 1, length - 2).random_(1000, 40000);
  tokens.select(1, length - 1).fill_(49407);
  return tokens;
}

struct Timing {
  std::vector<double> batch_ms;
  double first_ms = 0;  // the first call, warm-up or timed: kernel selection, JIT, allocator growth
  double percentile(double q) const {
    std::vector<double> s = batch_ms;
    std::sort(s.begin(), s.end());
    return s[std::min(s.size() - 1, static_cast<size_t>(q * (s.size() - 1) + 0.5))];
  }
  double mean() const { return std::accumulate(batch_ms.begin(), batch_ms.end(), 0.0) / batch_ms.size(); }
};

template <typename F>
Timing time_loop(const BenchParams& p, const c10::Device& device, F&& step) {
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  Timing t;
  auto timed_step = [&] {
    const auto a = std::chrono::steady_clock::now();
    step();
    sync();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
  };
  if (p.warmup > 0) t.first_ms = timed_step();
  for (int i = 1; i < p.warmup; ++i) step();
  sync();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    t.batch_ms.push_back(timed_step());
    const auto b = std::chrono::steady_clock::now();
    if (p.warmup <= 0 && i == 0) t.first_ms = t.batch_ms.back();
    const double elapsed = std::chrono::duration<double>(b - start).count();
    if (p.iterations > 0 ? i + 1 >= p.iterations : (elapsed >= p.seconds && i >= 2)) break;
  }
  return t;
}

int run_bench(const BenchParams& p, const CommonParams& common) {
  const RuntimeInfo info = setup_runtime(common);
  const c10::Device device = resolve_device(common.device);
  if (p.batch <= 0) throw invalid_argument("--batch must be positive");
  json out;
  out["modality"] = p.modality;
  out["batch"] = p.batch;
  out["device"] = device.str();
  out["threads"] = info.threads;
  out["blas"] = info.blas_library;
  out["torch"] = info.torch_version;
  Timing timing;
  double flops_per_item = 0;
  double parallel_throughput = 0;  // --parallel-passes > 1: items/s over all passes
  c10::optional<torch::InferenceMode> inference;
  if (p.modality != "train") inference.emplace();
  if (p.modality == "matmul") {
    // The machine's own fp32 matmul peak, the yardstick for the model figures.
    const int64_t n = p.matmul_size;
    auto a = torch::randn({n, n}, torch::TensorOptions().device(device));
    auto b = torch::randn({n, n}, torch::TensorOptions().device(device));
    auto c = torch::empty({n, n}, torch::TensorOptions().device(device));
    timing = time_loop(p, device, [&] { torch::mm_out(c, a, b); });
    flops_per_item = 2.0 * n * n * n;
    out["batch"] = 1;
    out["matmul_size"] = n;
    out["throughput"] = 1000.0 / timing.mean();
  } else {
    if (p.checkpoint.empty()) throw invalid_argument("--checkpoint is required for --modality " + p.modality);
    // Cold start: the checkpoint read and the weights on the device.
    const auto load_start = std::chrono::steady_clock::now();
    auto model = CheckpointReader::load_model(p.checkpoint, read_options(common));
    model->to(device);
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
    out["load_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    const ClipConfig& cfg = model->config();
    out["checkpoint"] = p.checkpoint;
    out["architecture"] = cfg.name.empty() ? cfg.to_open_clip_json().dump() : cfg.name;
    // --precision for a forward: bf16 autocast (fp32 weights, bf16 matmuls
    // and convolutions) or int8 (the linear layers quantized), and how far
    // its embeddings are from fp32's on the same inputs: the lowest cosine
    // similarity over the batch.
    const bool forward = p.modality == "image" || p.modality == "text";
    const InferencePrecision precision = forward ? parse_inference_precision(p.precision) : InferencePrecision::kFp32;
    if (forward) check_inference_precision(precision, device);
    const bool bf16_forward = precision == InferencePrecision::kBf16;
    if (p.parallel_passes < 1) throw invalid_argument("--parallel-passes must be >= 1");
    if (p.parallel_passes > 1 && (!forward || !device.is_cpu())) {
      throw invalid_argument("--parallel-passes runs image or text passes on a CPU only");
    }
    if (p.parallel_passes > p.batch) throw invalid_argument("--parallel-passes must not exceed --batch");
    // `run` computes the embeddings of a batch of inputs.
    auto timed_forward = [&](const at::Tensor& inputs, const std::function<at::Tensor(const at::Tensor&)>& run) {
      if (precision != InferencePrecision::kFp32) {
        const auto reference = run(inputs);
        at::Tensor low;
        if (precision == InferencePrecision::kInt8) {
          model->quantize_int8();
          low = run(inputs);
        } else {
          AutocastGuard autocast(device.type(), true);
          low = run(inputs).to(torch::kFloat);
        }
        out["min_cosine_vs_fp32"] = torch::cosine_similarity(low, reference, 1).min().item<double>();
      }
      out["precision"] = inference_precision_name(precision);
      if (p.parallel_passes == 1) {
        AutocastGuard autocast(device.type(), bf16_forward);
        timing = time_loop(p, device, [&] { run(inputs); });
        return;
      }
      // The batch split over passes that run side by side, each on its
      // share of the threads, for the same time: refineryd's CPU serving
      // (--parallel-passes). Throughput counts every pass's items.
      const auto parts = inputs.tensor_split(p.parallel_passes);
      const int pass_threads = std::max(1, info.threads / p.parallel_passes);
      std::vector<Timing> timings(parts.size());
      std::vector<std::exception_ptr> errors(parts.size());
      std::vector<std::thread> passes;
      for (size_t i = 0; i < parts.size(); ++i) {
        passes.emplace_back([&, i] {
          try {
            set_this_threads_intra_op_threads(pass_threads);
            torch::InferenceMode guard;
            AutocastGuard autocast(device.type(), bf16_forward);
            timings[i] = time_loop(p, device, [&] { run(parts[i]); });
          } catch (...) {
            errors[i] = std::current_exception();
          }
        });
      }
      for (auto& t : passes) t.join();
      for (const auto& e : errors) {
        if (e) std::rethrow_exception(e);
      }
      // Each pass's steady rate (warm-up left out), summed: they ran side by side.
      for (size_t i = 0; i < parts.size(); ++i) {
        parallel_throughput += static_cast<double>(parts[i].size(0)) * 1000.0 / timings[i].mean();
      }
      timing = timings[0];
      out["parallel_passes"] = p.parallel_passes;
      out["pass_threads"] = pass_threads;
      out["pass_batch"] = parts[0].size(0);
    };
    if (p.modality == "image") {
      const int s = cfg.vision.image_size;
      auto pixels = torch::randn({p.batch, 3, s, s}, torch::TensorOptions().device(device));
      timed_forward(pixels, [&](const at::Tensor& x) { return model->encode_image(x); });
      flops_per_item = cfg.image_flops();
    } else if (p.modality == "text") {
      at::Tensor tokens;
      if (!p.texts_file.empty()) {
#ifdef REFINERY_HAVE_IO
        tokens = bench_text_tokens(p.texts_file, p.batch, cfg.text.context_length);
#else
        throw unimplemented("--texts needs the tokenizer, which this build (REFINERY_TORCH_ONLY) leaves out");
#endif
      } else {
        if (p.text_tokens < 2 || p.text_tokens > cfg.text.context_length) {
          throw invalid_argument("--text-tokens must be in [2, " + std::to_string(cfg.text.context_length) + "]");
        }
        tokens = synthetic_tokens(p.batch, cfg.text.context_length, p.text_tokens);
      }
      const int64_t run_length = tokens.to(torch::kLong).argmax(1).max().item<int64_t>() + 1;
      tokens = tokens.to(device);
      timed_forward(tokens, [&](const at::Tensor& x) { return model->encode_text(x); });
      flops_per_item = cfg.text_flops(static_cast<int>(run_length));
      out["text_tokens"] = run_length;
    } else if (p.modality == "train") {
      // One CLIP-Refine optimizer step per iteration on synthetic pixels and
      // tokens: student forward + backward, teacher forward, AdamW.
      RefineOptions options;
      options.objective.method = parse_refine_method(p.method);
      options.precision = parse_training_precision(p.precision);
      options.batch_size = p.batch;
      options.micro_batch_size = p.micro_batch;
      const bool bf16 = options.precision == TrainingPrecision::kBFloat16;
      ClipModel teacher{nullptr};
      if (needs_teacher(options.objective.method)) {
        teacher = ClipModel(cfg);
        load_state_dict_strict(teacher, model_state_dict(model), p.checkpoint);
        teacher->to(device);
        teacher->eval();
        for (auto& t : teacher->parameters()) t.set_requires_grad(false);
      }
      std::vector<std::pair<std::string, at::Tensor>> params;
      for (auto& t : model->named_parameters()) params.emplace_back(t.key(), t.value());
      AdamW optimizer(params, AdamWOptions().weight_decay(options.weight_decay));
      RefineStep step(model, teacher, optimizer, options, device, bf16);
      const int s = cfg.vision.image_size;
      if (p.text_tokens < 2 || p.text_tokens > cfg.text.context_length) {
        throw invalid_argument("--text-tokens must be in [2, " + std::to_string(cfg.text.context_length) + "]");
      }
      auto pixels = torch::randn({p.batch, 3, s, s}, torch::TensorOptions().device(device));
      auto tokens = synthetic_tokens(p.batch, cfg.text.context_length, p.text_tokens).to(torch::kLong).to(device);
#ifdef REFINERY_HAVE_CUDA_ALLOCATOR
      if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#endif
      step.set_synchronize_phases(true);
      int64_t n = 0;
      double phase[4] = {0, 0, 0, 0};
      int64_t timed = 0;
      timing = time_loop(p, device, [&] {
        const StepLosses l = step.run(pixels, tokens, n++, options.lr);
        if (n > p.warmup) {
          phase[0] += l.student_forward_s;
          phase[1] += l.teacher_forward_s;
          phase[2] += l.backward_s;
          phase[3] += l.optimizer_s;
          ++timed;
        }
      });
      if (timed > 0) {
        out["phase_ms"] = {{"student_forward", phase[0] * 1000 / timed},
                           {"teacher_forward", phase[1] * 1000 / timed},
                           {"backward", phase[2] * 1000 / timed},
                           {"optimizer", phase[3] * 1000 / timed}};
      }
      const double model_flops = cfg.image_flops() + cfg.text_flops(p.text_tokens);
      // Student forward + backward (3x forward) and the teacher's forward.
      flops_per_item = model_flops * (teacher ? 4.0 : 3.0);
      out["method"] = refine_method_name(options.objective.method);
      out["micro_batch"] = p.micro_batch;
      out["precision"] = bf16 ? "bf16" : "fp32";
      out["text_tokens"] = p.text_tokens;
#ifdef REFINERY_HAVE_CUDA_ALLOCATOR
      if (device.is_cuda()) {
        const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
        out["peak_gpu_memory_bytes"] = stats.allocated_bytes[0].peak;  // StatType::AGGREGATE
      }
#endif
    } else {
      throw invalid_argument("--modality must be image, text, train or matmul, got '" + p.modality + "'");
    }
    out["throughput"] = parallel_throughput > 0 ? parallel_throughput : p.batch * 1000.0 / timing.mean();
  }
  out["iterations"] = timing.batch_ms.size();
  out["latency_ms"] = timing.mean();
  out["latency_p50_ms"] = timing.percentile(0.5);
  out["latency_p90_ms"] = timing.percentile(0.9);
  out["first_pass_ms"] = timing.first_ms;
  out["gflop_per_item"] = flops_per_item / 1e9;
  out["gflops"] = out["throughput"].get<double>() * flops_per_item / 1e9;
  {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    out["peak_rss_bytes"] = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  }
  if (p.json_output) {
    std::cout << out.dump() << "\n";
  } else {
    const std::string passes =
        p.parallel_passes > 1 ? " in " + std::to_string(p.parallel_passes) + " passes side by side" : "";
    std::printf("%s: %.2f %s/s (batch %d%s, %.1f ms/%s, p90 %.1f ms), %.1f GFLOP/s on %s with %d threads\n",
                p.modality.c_str(), out["throughput"].get<double>(), p.modality == "matmul" ? "matmuls" : "items",
                out["batch"].get<int>(), passes.c_str(), timing.mean(), passes.empty() ? "batch" : "pass",
                timing.percentile(0.9), out["gflops"].get<double>(), device.str().c_str(), info.threads);
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<BenchParams>();
  BenchParams& bench = *params;
  CommonParams& common = command.common;
  auto* bench_cmd = app.add_subcommand("bench", "Measure forward or training-step throughput (or the machine's fp32 matmul peak)");
  bench_cmd->add_option("--checkpoint", bench.checkpoint, "CKPT (not needed for --modality matmul)");
  bench_cmd->add_option("--modality", bench.modality,
                        "image, text, train (one CLIP-Refine optimizer step per batch) or matmul")
      ->capture_default_str();
  bench_cmd->add_option("--method", bench.method, "--modality train: the objective")->capture_default_str();
  bench_cmd->add_option("--micro-batch", bench.micro_batch,
                        "--modality train: pairs per forward/backward pass (gradient caching; 0 = the whole batch)")
      ->capture_default_str();
  bench_cmd->add_option("--precision", bench.precision,
                        "image, text: fp32, bf16 (autocast) or int8 (dynamic quantization), with the lowest cosine against fp32; train: fp32 or bf16")
      ->capture_default_str();
  bench_cmd->add_option("--batch", bench.batch, "Items per forward pass")->capture_default_str();
  bench_cmd->add_option("--warmup", bench.warmup, "Untimed iterations first")->capture_default_str();
  bench_cmd->add_option("--iterations", bench.iterations, "Timed iterations (0 = run for --seconds)")->capture_default_str();
  bench_cmd->add_option("--seconds", bench.seconds, "Timed duration when --iterations is 0")->capture_default_str();
  bench_cmd->add_option("--text-tokens", bench.text_tokens, "Synthetic text length incl. SOT/EOT")->capture_default_str();
  bench_cmd->add_option("--texts", bench.texts_file, "Bench text on these captions (JSON array) instead");
  bench_cmd->add_option("--matmul-size", bench.matmul_size, "N for the N x N matmul")->capture_default_str();
  bench_cmd->add_option("--parallel-passes", bench.parallel_passes,
                        "image, text on a CPU: split the batch over N passes side by side, each on threads / N "
                        "intra-op threads (refineryd's --parallel-passes); throughput counts them all")
      ->capture_default_str();
  bench_cmd->add_flag("--json", bench.json_output, "Print one JSON object");
  add_common(bench_cmd, common, true);
  bench_cmd->callback([&command, params] {
    command.run = [&command, params] { return run_bench(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
