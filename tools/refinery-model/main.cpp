// refinery-model: offline tool for people holding a CLIP checkpoint.
// Subcommands: info, convert, tokenize, preprocess, embed, match, bench, init.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sys/resource.h>
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define REFINERY_HAVE_CUDA_ALLOCATOR 1
#endif

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "core/runtime/torch_runtime.h"
#include "core/safetensors/safetensors.h"
#include "core/train/adamw.h"
#include "core/train/refine_step.h"
#ifdef REFINERY_HAVE_IO
#include "core/embedding/embedder.h"
#include "core/image/image_decoder.h"
#include "core/image/image_preprocessor.h"
#include "core/text/bpe_tokenizer.h"
#endif

namespace refinery {
namespace {

using nlohmann::json;

// Options shared by the subcommands that run the model.
struct CommonParams {
  int threads = 0;              // 0 = all cores
  std::string device = "cpu";   // auto | cpu | cuda[:N]
  std::string model_config;     // optional open_clip / HF config override
  bool quiet = false;
};

struct InfoParams { std::string checkpoint; };
struct ConvertParams {
  std::string checkpoint, output;
  std::string format = "safetensors";  // safetensors | hf
  std::string precision = "fp32";      // fp32 | fp16
};
struct TokenizeParams {
  std::vector<std::string> texts;
  std::string texts_file, output;
  int context_length = 77;
  bool no_truncate = false;
};
struct PreprocessParams {
  std::vector<std::string> images;
  std::string output;
  int size = 224;
};
struct EmbedParams {
  std::string checkpoint, texts_file, output;
  std::vector<std::string> images;
  bool normalize = false, no_truncate = false;
  int batch = 64;
};
struct MatchParams {
  std::string checkpoint, texts_file;
  std::vector<std::string> images;
  int top = 1;
  bool json_output = false;
};
struct BenchParams {
  std::string checkpoint, modality = "image", texts_file;
  std::string method = "clip-refine", precision = "auto";  // --modality train
  int micro_batch = 0;
  int batch = 32, warmup = 2, iterations = 0, text_tokens = 77, matmul_size = 2048;
  double seconds = 10.0;
  bool json_output = false;
};
struct InitParams {
  std::string arch, output, format = "safetensors", precision = "fp32";
  uint64_t seed = 0;
};

RuntimeInfo setup_runtime(const CommonParams& p) {
  RuntimeOptions o;
  o.threads = p.threads;
  o.device = p.device;
  RuntimeInfo info = configure_runtime(o);
  if (!p.quiet) std::fprintf(stderr, "refinery-model: %s\n", info.summary().c_str());
  return info;
}

CheckpointReadOptions read_options(const CommonParams& p) {
  CheckpointReadOptions o;
  o.model_config_path = p.model_config;
  return o;
}

std::vector<std::string> read_texts_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw not_found(path + ": cannot open texts file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw invalid_argument(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_array()) throw invalid_argument(path + ": must be a JSON array of strings");
  std::vector<std::string> texts;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) throw invalid_argument(path + ": item " + std::to_string(i) + " is not a string");
    texts.push_back(j[i].get<std::string>());
  }
  return texts;
}

void write_tensor(SafetensorsWriter& w, const std::string& name, const at::Tensor& t) {
  auto c = t.contiguous();
  if (c.scalar_type() == torch::kInt) {
    w.add_int32(name, c.sizes().vec(), c.data_ptr<int32_t>());
  } else {
    c = c.to(torch::kFloat);
    w.add_float32(name, c.sizes().vec(), c.data_ptr<float>());
  }
}

json matrix_json(const at::Tensor& t) {
  json rows = json::array();
  auto c = t.contiguous().to(torch::kFloat);
  for (int64_t i = 0; i < c.size(0); ++i) {
    auto row = c[i];
    rows.push_back(std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel()));
  }
  return rows;
}

// Parameters whose name starts (or, with `invert`, does not start) with prefix.
int64_t count_params(ClipModel& model, const std::string& prefix, bool invert = false) {
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) {
    if ((p.key().rfind(prefix, 0) == 0) != invert) n += p.value().numel();
  }
  return n;
}

int run_info(const InfoParams& p, const CommonParams& common) {
  setup_runtime(common);
  Checkpoint ck;
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common), &ck);
  json out;
  out["path"] = p.checkpoint;
  out["format"] = checkpoint_format_name(ck.format);
  out["config_source"] = ck.config_source;
  out["architecture"] = ck.config.to_open_clip_json();
  out["parameters"] = {{"total", count_params(model, "")},
                       {"visual", count_params(model, "visual.")},
                       {"text", count_params(model, "visual.", /*invert=*/true)}};
  out["logit_scale"] = model->logit_scale.item<double>();
  if (!ck.metadata.empty()) out["metadata"] = ck.metadata;
  std::cout << out.dump(2) << "\n";
  return 0;
}

int run_convert(const ConvertParams& p, const CommonParams& common) {
  setup_runtime(common);
  Checkpoint ck;
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common), &ck);
  CheckpointWriteOptions o;
  o.precision = parse_weight_precision(p.precision);
  o.metadata["refinery.source"] = p.checkpoint;
  if (p.format == "safetensors") {
    CheckpointWriter::write_safetensors(model, p.output, o);
  } else if (p.format == "hf") {
    CheckpointWriter::write_hf_folder(model, p.output, o);
  } else {
    throw invalid_argument("--format must be safetensors or hf, got '" + p.format + "'");
  }
  if (!common.quiet) {
    std::fprintf(stderr, "refinery-model: wrote %s (%s, %s) from %s (%s)\n", p.output.c_str(), p.format.c_str(),
                 p.precision.c_str(), p.checkpoint.c_str(), checkpoint_format_name(ck.format));
  }
  return 0;
}

int run_init(const InitParams& p, const CommonParams& common) {
  setup_runtime(common);
  ClipModel model(builtin_architecture(p.arch));
  model->reset_parameters_random(p.seed);
  CheckpointWriteOptions o;
  o.precision = parse_weight_precision(p.precision);
  o.metadata["refinery.init"] = json{{"arch", p.arch}, {"seed", p.seed}}.dump();
  if (p.format == "safetensors") {
    CheckpointWriter::write_safetensors(model, p.output, o);
  } else if (p.format == "hf") {
    CheckpointWriter::write_hf_folder(model, p.output, o);
  } else {
    throw invalid_argument("--format must be safetensors or hf, got '" + p.format + "'");
  }
  if (!common.quiet) std::fprintf(stderr, "refinery-model: wrote a random %s to %s\n", p.arch.c_str(), p.output.c_str());
  return 0;
}

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
  for (int i = 0; i < p.warmup; ++i) step();
  sync();
  Timing t;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    const auto a = std::chrono::steady_clock::now();
    step();
    sync();
    const auto b = std::chrono::steady_clock::now();
    t.batch_ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
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
    auto model = CheckpointReader::load_model(p.checkpoint, read_options(common));
    model->to(device);
    const ClipConfig& cfg = model->config();
    out["checkpoint"] = p.checkpoint;
    out["architecture"] = cfg.name.empty() ? cfg.to_open_clip_json().dump() : cfg.name;
    if (p.modality == "image") {
      const int s = cfg.vision.image_size;
      auto pixels = torch::randn({p.batch, 3, s, s}, torch::TensorOptions().device(device));
      timing = time_loop(p, device, [&] { model->encode_image(pixels); });
      flops_per_item = cfg.image_flops();
    } else if (p.modality == "text") {
      at::Tensor tokens;
      if (!p.texts_file.empty()) {
#ifdef REFINERY_HAVE_IO
        const auto texts = read_texts_file(p.texts_file);
        if (texts.empty()) throw invalid_argument(p.texts_file + ": no texts");
        std::vector<std::string> batch;
        for (int i = 0; i < p.batch; ++i) batch.push_back(texts[i % texts.size()]);
        auto ids = BpeTokenizer::default_instance().tokenize_batch(batch, cfg.text.context_length, true);
        tokens = torch::from_blob(ids.data(), {p.batch, cfg.text.context_length}, torch::kInt).clone();
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
      timing = time_loop(p, device, [&] { model->encode_text(tokens); });
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
      const bool bf16 = options.precision == TrainingPrecision::kBFloat16 ||
                        (options.precision == TrainingPrecision::kAuto && device.is_cuda());
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
    out["throughput"] = p.batch * 1000.0 / timing.mean();
  }
  out["iterations"] = timing.batch_ms.size();
  out["latency_ms"] = timing.mean();
  out["latency_p50_ms"] = timing.percentile(0.5);
  out["latency_p90_ms"] = timing.percentile(0.9);
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
    std::printf("%s: %.2f %s/s (batch %d, %.1f ms/batch, p90 %.1f ms), %.1f GFLOP/s on %s with %d threads\n",
                p.modality.c_str(), out["throughput"].get<double>(), p.modality == "matmul" ? "matmuls" : "items",
                out["batch"].get<int>(), timing.mean(), timing.percentile(0.9), out["gflops"].get<double>(),
                device.str().c_str(), info.threads);
  }
  return 0;
}

#ifdef REFINERY_HAVE_IO
int run_tokenize(const TokenizeParams& p) {
  std::vector<std::string> texts = p.texts;
  if (!p.texts_file.empty()) {
    if (!texts.empty()) throw invalid_argument("give texts as arguments or --texts FILE.json, not both");
    texts = read_texts_file(p.texts_file);
  }
  if (texts.empty()) throw invalid_argument("no texts given (arguments or --texts FILE.json)");
  const auto& tok = BpeTokenizer::default_instance();
  auto ids = tok.tokenize_batch(texts, p.context_length, !p.no_truncate);
  const auto n = static_cast<int64_t>(texts.size());
  if (!p.output.empty()) {
    SafetensorsWriter w;
    w.add_int32("tokens", {n, p.context_length}, ids.data());
    w.write(p.output);
    return 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int32_t> row(ids.begin() + i * p.context_length, ids.begin() + (i + 1) * p.context_length);
    std::cout << json(row).dump() << "\n";
  }
  return 0;
}

int run_preprocess(const PreprocessParams& p) {
  if (p.images.empty()) throw invalid_argument("no images given");
  ImagePreprocessorOptions o;
  o.size = p.size;
  ImagePreprocessor pre(o);
  const int64_t n = static_cast<int64_t>(p.images.size());
  std::vector<float> pixels(static_cast<size_t>(n) * 3 * p.size * p.size);
  for (int64_t i = 0; i < n; ++i) pre.preprocess(decode_image_file(p.images[i]), pixels.data() + i * 3 * p.size * p.size);
  SafetensorsWriter w;
  w.add_float32("pixels", {n, 3, p.size, p.size}, pixels.data());
  w.set_metadata("images", json(p.images).dump());
  w.write(p.output);
  return 0;
}

int run_embed(const EmbedParams& p, const CommonParams& common) {
  if (p.texts_file.empty() == p.images.empty()) throw invalid_argument("give exactly one of --texts FILE.json or --images IMG...");
  setup_runtime(common);
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common));
  EmbedderOptions o;
  o.batch_size = p.batch;
  o.normalize = p.normalize;
  o.truncate = !p.no_truncate;
  Embedder embedder(model, resolve_device(common.device), o);
  at::Tensor embeddings;
  json items;
  if (!p.texts_file.empty()) {
    const auto texts = read_texts_file(p.texts_file);
    if (texts.empty()) throw invalid_argument(p.texts_file + ": no texts");
    embeddings = embedder.embed_texts(texts);
    items = texts;
  } else {
    embeddings = embedder.embed_image_files(p.images);
    items = p.images;
  }
  if (!p.output.empty()) {
    SafetensorsWriter w;
    write_tensor(w, "embeddings", embeddings);
    w.set_metadata("checkpoint", p.checkpoint);
    w.set_metadata("normalized", p.normalize ? "true" : "false");
    w.set_metadata("items", items.dump());
    w.write(p.output);
    if (!common.quiet) std::fprintf(stderr, "refinery-model: wrote %lld embeddings to %s\n",
                                    static_cast<long long>(embeddings.size(0)), p.output.c_str());
  } else {
    std::cout << json{{"embeddings", matrix_json(embeddings)}}.dump() << "\n";
  }
  return 0;
}

// For each image, the captions the model scores highest (softmax over the
// captions with the model's logit scale, as CLIP's zero-shot does).
int run_match(const MatchParams& p, const CommonParams& common) {
  if (p.images.empty()) throw invalid_argument("no images given (--images IMG...)");
  setup_runtime(common);
  auto model = CheckpointReader::load_model(p.checkpoint, read_options(common));
  EmbedderOptions o;
  o.normalize = true;
  Embedder embedder(model, resolve_device(common.device), o);
  const auto texts = read_texts_file(p.texts_file);
  if (texts.empty()) throw invalid_argument(p.texts_file + ": no texts");
  const auto text_emb = embedder.embed_texts(texts);
  const auto image_emb = embedder.embed_image_files(p.images);
  const double scale = model->logit_scale.exp().item<double>();
  const auto probs = (scale * image_emb.matmul(text_emb.t())).softmax(1);
  const int k = std::max(1, std::min<int>(p.top, static_cast<int>(texts.size())));
  const auto top = probs.topk(k, 1);
  const auto values = std::get<0>(top), indices = std::get<1>(top);
  for (size_t i = 0; i < p.images.size(); ++i) {
    json matches = json::array();
    for (int j = 0; j < k; ++j) {
      const int64_t t = indices[i][j].item<int64_t>();
      matches.push_back({{"text", texts[t]}, {"index", t}, {"probability", values[i][j].item<double>()}});
    }
    if (p.json_output) {
      std::cout << json{{"image", p.images[i]}, {"matches", matches}}.dump() << "\n";
    } else {
      const std::string name = p.images[i].substr(p.images[i].find_last_of('/') + 1);
      std::printf("%-20s -> \"%s\" (p=%.3f)\n", name.c_str(), matches[0]["text"].get<std::string>().c_str(),
                  matches[0]["probability"].get<double>());
      for (int j = 1; j < k; ++j) {
        std::printf("%-20s    \"%s\" (p=%.3f)\n", "", matches[j]["text"].get<std::string>().c_str(),
                    matches[j]["probability"].get<double>());
      }
    }
  }
  return 0;
}
#endif

void add_common(CLI::App* cmd, CommonParams& c, bool with_model) {
  cmd->add_option("--threads", c.threads, "Intra-op threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("-q,--quiet", c.quiet, "No log lines on stderr");
  if (with_model) {
    cmd->add_option("--device", c.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
    cmd->add_option("--model-config", c.model_config,
                    "open_clip model-config JSON or HF config.json overriding the checkpoint's architecture");
  }
}

int run(int argc, char** argv) {
  CLI::App app{"refinery-model: inspect, convert and run a CLIP checkpoint offline.\n"
               "CKPT is an OpenAI TorchScript archive, a torch.save state dict, a .safetensors file or a\n"
               "Hugging Face CLIPModel folder."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("refinery-model ") + REFINERY_VERSION);
  CommonParams common;

  InfoParams info;
  auto* info_cmd = app.add_subcommand("info", "Print the checkpoint's format and inferred architecture as JSON");
  info_cmd->add_option("checkpoint", info.checkpoint, "CKPT")->required();
  add_common(info_cmd, common, true);

  ConvertParams conv;
  auto* conv_cmd = app.add_subcommand("convert", "Convert a checkpoint to .safetensors (open_clip names) or an HF folder");
  conv_cmd->add_option("checkpoint", conv.checkpoint, "CKPT")->required();
  conv_cmd->add_option("output", conv.output, "OUT file (safetensors) or folder (hf)")->required();
  conv_cmd->add_option("--format", conv.format, "safetensors or hf")->capture_default_str();
  conv_cmd->add_option("--precision", conv.precision, "fp32 or fp16")->capture_default_str();
  add_common(conv_cmd, common, true);

  InitParams init;
  auto* init_cmd = app.add_subcommand("init", "Write a randomly initialised model of a built-in architecture");
  init_cmd->add_option("--arch", init.arch, "Architecture: " + [] {
    std::string s;
    for (const auto& n : builtin_architectures()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }())->required();
  init_cmd->add_option("--out", init.output, "Output file (safetensors) or folder (hf)")->required();
  init_cmd->add_option("--seed", init.seed, "Random seed")->capture_default_str();
  init_cmd->add_option("--format", init.format, "safetensors or hf")->capture_default_str();
  init_cmd->add_option("--precision", init.precision, "fp32 or fp16")->capture_default_str();
  add_common(init_cmd, common, false);

  BenchParams bench;
  auto* bench_cmd = app.add_subcommand("bench", "Measure forward or training-step throughput (or the machine's fp32 matmul peak)");
  bench_cmd->add_option("--checkpoint", bench.checkpoint, "CKPT (not needed for --modality matmul)");
  bench_cmd->add_option("--modality", bench.modality,
                        "image, text, train (one CLIP-Refine optimizer step per batch) or matmul")
      ->capture_default_str();
  bench_cmd->add_option("--method", bench.method, "--modality train: the objective")->capture_default_str();
  bench_cmd->add_option("--micro-batch", bench.micro_batch,
                        "--modality train: pairs per forward/backward pass (gradient caching; 0 = the whole batch)")
      ->capture_default_str();
  bench_cmd->add_option("--precision", bench.precision, "--modality train: auto (bf16 on CUDA), fp32 or bf16")
      ->capture_default_str();
  bench_cmd->add_option("--batch", bench.batch, "Items per forward pass")->capture_default_str();
  bench_cmd->add_option("--warmup", bench.warmup, "Untimed iterations first")->capture_default_str();
  bench_cmd->add_option("--iterations", bench.iterations, "Timed iterations (0 = run for --seconds)")->capture_default_str();
  bench_cmd->add_option("--seconds", bench.seconds, "Timed duration when --iterations is 0")->capture_default_str();
  bench_cmd->add_option("--text-tokens", bench.text_tokens, "Synthetic text length incl. SOT/EOT")->capture_default_str();
  bench_cmd->add_option("--texts", bench.texts_file, "Bench text on these captions (JSON array) instead");
  bench_cmd->add_option("--matmul-size", bench.matmul_size, "N for the N x N matmul")->capture_default_str();
  bench_cmd->add_flag("--json", bench.json_output, "Print one JSON object");
  add_common(bench_cmd, common, true);

#ifdef REFINERY_HAVE_IO
  TokenizeParams tok;
  auto* tok_cmd = app.add_subcommand("tokenize", "Tokenize texts with CLIP's BPE (77 tokens, SOT/EOT)");
  tok_cmd->add_option("texts", tok.texts, "TEXT...");
  tok_cmd->add_option("--texts", tok.texts_file, "FILE.json, a JSON array of strings");
  tok_cmd->add_option("--output", tok.output, "Write `tokens` [N, 77] int32 to this .safetensors");
  tok_cmd->add_option("--context-length", tok.context_length, "Tokens per row")->capture_default_str();
  tok_cmd->add_flag("--no-truncate", tok.no_truncate, "Reject over-long texts instead of truncating");

  PreprocessParams pre;
  auto* pre_cmd = app.add_subcommand("preprocess", "Decode and preprocess images as CLIP does");
  pre_cmd->add_option("images", pre.images, "IMG...")->required();
  pre_cmd->add_option("--size", pre.size, "Output side in pixels")->capture_default_str();
  pre_cmd->add_option("--output", pre.output, "Write `pixels` [N, 3, S, S] float32 here")->required();

  EmbedParams emb;
  auto* emb_cmd = app.add_subcommand("embed", "Embed texts or images");
  emb_cmd->add_option("--checkpoint", emb.checkpoint, "CKPT")->required();
  emb_cmd->add_option("--texts", emb.texts_file, "FILE.json, a JSON array of strings");
  emb_cmd->add_option("--images", emb.images, "IMG...");
  emb_cmd->add_option("--output", emb.output, "Write `embeddings` [N, D] float32 to this .safetensors");
  emb_cmd->add_option("--batch", emb.batch, "Items per forward pass")->capture_default_str();
  emb_cmd->add_flag("--normalize", emb.normalize, "L2-normalise the embeddings");
  emb_cmd->add_flag("--no-truncate", emb.no_truncate, "Reject over-long texts instead of truncating");
  add_common(emb_cmd, common, true);

  MatchParams match;
  auto* match_cmd = app.add_subcommand("match", "For each image, print the best-matching caption");
  match_cmd->add_option("--checkpoint", match.checkpoint, "CKPT")->required();
  match_cmd->add_option("--texts", match.texts_file, "FILE.json, candidate captions")->required();
  match_cmd->add_option("--images", match.images, "IMG...")->required();
  match_cmd->add_option("--top", match.top, "Captions to show per image")->capture_default_str();
  match_cmd->add_flag("--json", match.json_output, "One JSON object per image");
  add_common(match_cmd, common, true);
#endif

  CLI11_PARSE(app, argc, argv);
  if (info_cmd->parsed()) return run_info(info, common);
  if (conv_cmd->parsed()) return run_convert(conv, common);
  if (init_cmd->parsed()) return run_init(init, common);
  if (bench_cmd->parsed()) return run_bench(bench, common);
#ifdef REFINERY_HAVE_IO
  if (tok_cmd->parsed()) return run_tokenize(tok);
  if (pre_cmd->parsed()) return run_preprocess(pre);
  if (emb_cmd->parsed()) return run_embed(emb, common);
  if (match_cmd->parsed()) return run_match(match, common);
#endif
  return 1;
}

}  // namespace
}  // namespace refinery

int main(int argc, char** argv) {
  try {
    return refinery::run(argc, argv);
  } catch (const refinery::Error& e) {
    std::fprintf(stderr, "refinery-model: error: %s\n", e.what());
    return 2;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "refinery-model: error: %s\n", e.what_without_backtrace());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "refinery-model: error: %s\n", e.what());
    return 2;
  }
}
