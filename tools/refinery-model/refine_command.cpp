// `refinery-model refine --base CKPT --data SPEC [job options] --output OUT
// [--events FILE.jsonl]`: the trainer as a plain command, with the options of
// `refinery jobs submit` (the same JobSpec flags and METHOD.md defaults).
//
// Started by torchrun, a Kubeflow PyTorchJob or srun (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT set), it is one rank of a
// data-parallel run over c10d: each rank loads and trains on its slice of
// every batch, and rank 0 writes the checkpoints, the events and OUT. Run
// again with the same arguments (any world size dividing the batch), it
// resumes from its newest checkpoint (OUT.checkpoints/ by default).
// SIGINT or SIGTERM stops every rank at the next step with a checkpoint.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <cstring>
#include <string>

#include "core/base/error.h"
#include "core/base/remove_tree.h"
#include "core/checkpoint/checkpoint_writer.h"
#include "core/data/caption_dataset.h"
#include "core/distributed/process_group.h"
#include "core/model/clip_config.h"
#include "core/refine/refine_trainer.h"
#include "refinery/job_json.h"
#include "refinery/job_spec_flags.h"
#include "refinery/proto_json.h"
#include "spec/job_events.h"
#include "spec/job_spec.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_stop_requested{false};

extern "C" void request_stop(int) { g_stop_requested.store(true); }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct RefineParams {
  JobSpecFlags spec_flags;
  std::string output, events, checkpoint_dir, backend = "auto";
  int timeout_s = 300;
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The events of `jobs watch --json`, one JSON object per line, flushed per
// event. Appends to an existing file, numbering on from its last event, so a
// resumed run's log reads as one.
class EventLog {
 public:
  EventLog(const std::string& path, std::string job_id) : job_id_(std::move(job_id)) {
    if (path.empty()) return;
    if (path == "-") {
      out_ = stdout;
      return;
    }
    std::ifstream in(path);
    std::string line, last;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line;
    }
    if (!last.empty()) {
      try {
        seq_ = nlohmann::json::parse(last).at("seq").get<int64_t>();
      } catch (const std::exception&) {
        throw invalid_argument("--events " + path + ": its last line is not an event of an earlier run (no \"seq\"): "
                               "give a new file");
      }
    }
    out_ = std::fopen(path.c_str(), "a");
    if (out_ == nullptr) throw invalid_argument("--events " + path + ": cannot open for appending: " + std::strerror(errno));
    owned_ = true;
  }
  ~EventLog() {
    if (owned_) std::fclose(out_);
  }
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void write(v1::JobEvent event) {
    if (out_ == nullptr) return;
    event.set_seq(++seq_);
    event.set_job_id(job_id_);
    event.set_unix_ms(now_ms());
    const std::string line = job_event_to_json(event).dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), out_) != line.size() || std::fflush(out_) != 0) {
      throw internal_error("cannot write the events file: " + std::string(std::strerror(errno)));
    }
  }

 private:
  std::string job_id_;
  std::FILE* out_ = nullptr;
  bool owned_ = false;
  int64_t seq_ = 0;
};

std::string describe_metrics(const std::map<std::string, double>& m) {
  std::string out;
  char buf[64];
  for (const auto& [k, v] : m) {
    std::snprintf(buf, sizeof buf, "%s=%.4g", k.c_str(), v);
    out += (out.empty() ? "" : " ") + std::string(buf);
  }
  return out;
}

// "cuda" on rank r of a node means cuda:LOCAL_RANK, as torchrun users expect.
std::string device_for_rank(const std::string& device, const DistributedOptions& d) {
  if (d.world_size > 1 && device == "cuda") return "cuda:" + std::to_string(d.local_rank);
  return device;
}

int run_refine(const RefineParams& p, CommonParams common) {
  v1::JobSpec raw;
  try {
    raw = p.spec_flags.spec();
  } catch (const JobSpecFlagError& e) {
    throw invalid_argument(e.what());
  }
  if (raw.base_model().empty() && raw.init() != "random") {
    throw invalid_argument("refine: give --base CKPT (or \"base_model\" in --file), or --init random --arch ARCH");
  }
  if (raw.data().empty()) throw invalid_argument("refine: give --data SPEC (or \"data\" in --file)");
  if (raw.workers() > 1 || !raw.devices().empty()) {
    throw invalid_argument("refine: --workers and --devices are for server jobs; here start one process per rank, "
                           "e.g. torchrun --nproc-per-node N --no-python refinery-model refine ...");
  }
  if (!raw.eval_suite().empty() || raw.eval_at_epochs_size() > 0) {
    throw invalid_argument(
        "refine: --eval-suite and --eval-at-epochs belong to server jobs; run `refinery-model eval` on the output");
  }

  DistributedOptions dist = distributed_options_from_env();
  dist.backend = p.backend;
  dist.timeout_s = p.timeout_s;
  const bool rank0 = dist.rank == 0;
  const std::string who = dist.world_size > 1 ? "refinery-model[rank " + std::to_string(dist.rank) + "]" : "refinery-model";
  auto log = [&](const std::string& m) {
    if (!common.quiet) std::fprintf(stderr, "%s: %s\n", who.c_str(), m.c_str());
  };
  common.device = device_for_rank(common.device, dist);
  if (!rank0) common.quiet = true;  // rank 0 speaks for the run; the others log only their own news
  setup_runtime(common);
  const c10::Device device = resolve_device(common.device);

  const v1::JobSpec spec = with_defaults(raw, RefineOptions().checkpoint_every, device.is_cpu());
  const RefineOptions options = refine_options_from_spec(spec);

  std::unique_ptr<ProcessGroup> group;
  if (dist.world_size > 1) group = std::make_unique<ProcessGroup>(dist, device);

  const bool from_scratch = spec.init() == "random";
  ClipModel model{nullptr};
  if (from_scratch) {
    model = ClipModel(builtin_architecture(spec.arch()));
    model->reset_parameters_random(spec.seed());
  } else {
    model = CheckpointReader::load_model(spec.base_model(), read_options(common));
  }
  auto data = std::make_shared<CaptionDataset>(load_caption_dataset(spec.data()));
  const std::string checkpoint_dir = p.checkpoint_dir.empty() ? p.output + ".checkpoints" : p.checkpoint_dir;
  RefineTrainer trainer(std::move(model), data, options, device, checkpoint_dir, group.get());

  EventLog events(rank0 ? p.events : std::string(), fs::path(p.output).filename().string());
  const int world = dist.world_size;
  std::string what = std::to_string(trainer.total_steps()) + (trainer.total_steps() == 1 ? " step of " : " steps of ") +
                     std::to_string(options.batch_size) + " pairs";
  if (world > 1) {
    what += " (" + std::to_string(options.batch_size / world) + " on each of " + std::to_string(world) + " ranks, " +
            group->backend() + ")";
  }
  what += " on " + device.str() + " (" + (trainer.uses_bf16() ? "bf16 autocast" : "fp32") + "), " +
          std::to_string(trainer.train_images()) + " training / " + std::to_string(trainer.val_images()) +
          " validation images";
  log(spec.method() + ": " + what);

  install_stop_handlers();
  ProgressBar bar(trainer.total_steps(), progress_options(common, "refine", "steps"));
  TrainerCallbacks cb;
  cb.should_stop = [] { return g_stop_requested.load(); };
  cb.on_log = [&](const std::string& m) { std::fprintf(stderr, "%s: %s\n", who.c_str(), m.c_str()); };
  const int64_t log_every = std::max<int64_t>(1, trainer.total_steps() / 20);
  cb.on_step = [&](const StepReport& r) {
    events.write(step_event(r));
    bar.update(r.step);
    if (!bar.enabled() && (r.step % log_every == 0 || r.step == r.total_steps)) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "step %lld/%lld loss %.5g  %.1f samples/s  data %.2fs  comm %.2fs",
                    static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.loss,
                    r.samples_per_second, r.data_seconds, r.communication_seconds);
      log(buf);
    }
  };
  cb.on_eval = [&](int64_t step, const std::map<std::string, double>& m) {
    events.write(eval_event(step, m));
    log("eval at step " + std::to_string(step) + ": " + describe_metrics(m));
  };
  cb.on_checkpoint = [&](const TrainingCheckpointInfo& written, const std::vector<TrainingCheckpointInfo>&) {
    events.write(checkpoint_event(written));
  };

  events.write(state_event(v1::JOB_STATE_RUNNING, what));
  TrainOutcome outcome;
  try {
    outcome = trainer.run(cb);
  } catch (const std::exception& e) {
    bar.finish();
    events.write(state_event(v1::JOB_STATE_FAILED, e.what()));
    throw;
  }
  bar.finish();
  if (group) {
    const CollectiveStats c = group->stats();
    char buf[200];
    std::snprintf(buf, sizeof buf, "collectives: %.3g GB summed, %.3g MB gathered, %.3g GB broadcast in %lld calls, %.1f s",
                  static_cast<double>(c.all_reduce_bytes) / 1e9, static_cast<double>(c.all_gather_bytes) / 1e6,
                  static_cast<double>(c.broadcast_bytes) / 1e9, static_cast<long long>(c.calls), c.seconds);
    log(buf);
  }
  if (outcome == TrainOutcome::kStopped) {
    // Rank 0 writes the checkpoints (on its own disk, maybe); the others
    // only know they stopped with it. A stop during the first evaluation
    // leaves none.
    std::string m = "stopped by a signal";
    if (!rank0) {
      m += " with rank 0, which keeps the checkpoint";
    } else if (const auto latest = TrainingCheckpoint::latest(checkpoint_dir)) {
      m += " with a checkpoint at step " + std::to_string(latest->step) + " in " + latest->path +
           "; the same command resumes from it";
    } else {
      m += " before the first step: no checkpoint, the same command starts over";
    }
    events.write(state_event(v1::JOB_STATE_CANCELLED, m));
    std::fprintf(stderr, "%s: %s\n", who.c_str(), m.c_str());
    return 1;
  }
  if (rank0) {
    CheckpointWriteOptions write;
    write.metadata["refinery.base_model"] = from_scratch ? "random:" + spec.arch() : spec.base_model();
    write.metadata["refinery.method"] = spec.method();
    write.metadata["refinery.data"] = spec.data();
    write.metadata["refinery.steps"] = std::to_string(trainer.total_steps());
    write.metadata["refinery.world_size"] = std::to_string(world);
    write.metadata["refinery.spec"] = proto_to_json(spec).dump();
    if (!trainer.last_metrics().empty()) write.metadata["refinery.metrics"] = nlohmann::json(trainer.last_metrics()).dump();
    CheckpointWriter::write_safetensors(trainer.student(), p.output, write);
    // The result is saved: its training checkpoints are no longer needed.
    // The default folder is ours (partial checkpoints of killed runs too);
    // of one the user named, only the checkpoints go.
    std::error_code ec;
    if (p.checkpoint_dir.empty()) {
      remove_tree(checkpoint_dir, ec);
    } else {
      for (const auto& c : TrainingCheckpoint::list(checkpoint_dir)) TrainingCheckpoint::remove(c.path);
      fs::remove(checkpoint_dir, ec);  // only when empty
    }
    events.write(result_event(p.output));
    events.write(state_event(v1::JOB_STATE_SUCCEEDED, "wrote " + p.output));
    log("wrote " + p.output);
  }
  // Every rank ends with rank 0's write: a launcher sees the run succeed
  // only once the result is on disk.
  if (group) group->barrier();
  return 0;
}

}  // namespace

void add_refine_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<RefineParams>();
  RefineParams& p = *params;
  auto* cmd = app.add_subcommand(
      "refine",
      "Refine a checkpoint with CLIP-Refine (or a baseline) here; one rank of a data-parallel run when started by "
      "torchrun, a PyTorchJob or srun");
  // Not here: the model's name and evaluation suites belong to the server's
  // registry, workers to its process management (torchrun does that here).
  p.spec_flags.add_to(cmd, "Training (unset: METHOD.md defaults, as for `refinery jobs submit`)",
                      {"name", "eval_suite", "eval_at_epochs", "workers", "devices"});
  cmd->add_option("--output", p.output, "The refined model (safetensors), written by rank 0 at the end")->required();
  cmd->add_option("--events", p.events,
                  "Append the run's events here, one JSON object per line, as `refinery jobs watch --json` prints "
                  "them (- for stdout)");
  cmd->add_option("--checkpoint-dir", p.checkpoint_dir,
                  "Training checkpoints, from which the same command resumes (default: OUTPUT.checkpoints)");
  cmd->add_option("--backend", p.backend, "Collectives between ranks: auto (nccl on CUDA, else gloo), gloo or nccl")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}))
      ->capture_default_str();
  cmd->add_option("--dist-timeout", p.timeout_s,
                  "Seconds a rank waits for the others (joining, or in a collective) before it fails")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_common(cmd, command.common, true);
  cmd->callback([&command, params] {
    command.run = [&command, params] { return run_refine(*params, command.common); };
  });
}

}  // namespace refinery::model_tool
