// distributed_step: runs STEPS CLIP-Refine steps of the fixture's tiny CLIP
// on a fixed synthetic global batch, as one process or as one rank of a
// c10d group (torchrun's variables), and prints each step's losses as JSON
// lines; rank 0 writes the final weights. The test script compares a
// 1-process run with 2- and 4-rank runs.
//
//   distributed_step CKPT METHOD BATCH MICRO STEPS OUT.safetensors
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/distributed/process_group.h"
#include "core/safetensors/safetensors.h"
#include "core/train/adamw.h"
#include "core/train/refine_step.h"

using namespace refinery;

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: distributed_step CKPT METHOD BATCH MICRO STEPS OUT.safetensors\n");
    return 2;
  }
  try {
    torch::set_num_threads(1);
    const std::string ckpt = argv[1];
    const int64_t batch = std::stoll(argv[3]), micro = std::stoll(argv[4]), steps = std::stoll(argv[5]);
    DistributedOptions defaults;
    if (const char* t = std::getenv("DISTRIBUTED_TIMEOUT_S")) defaults.timeout_s = std::stoi(t);
    const DistributedOptions dist = distributed_options_from_env(defaults);
    ProcessGroup group(dist, c10::Device(c10::kCPU));
    ClipModel model = CheckpointReader::load_model(ckpt);
    RefineOptions options;
    options.objective.method = parse_refine_method(argv[2]);
    options.batch_size = batch;
    options.micro_batch_size = micro;
    ClipModel teacher{nullptr};
    if (needs_teacher(options.objective.method)) {
      teacher = CheckpointReader::load_model(ckpt);
      teacher->eval();
      for (auto& t : teacher->parameters()) t.set_requires_grad(false);
    }
    std::vector<std::pair<std::string, at::Tensor>> params;
    for (auto& t : model->named_parameters()) params.emplace_back(t.key(), t.value());
    AdamW optimizer(params, AdamWOptions().weight_decay(options.weight_decay));
    RefineStep step(model, teacher, optimizer, options, c10::Device(c10::kCPU), false, &group);
    const auto& cfg = model->config();
    const int s = cfg.vision.image_size;
    if (batch % dist.world_size != 0) throw invalid_argument("WORLD_SIZE must divide BATCH");
    const int64_t per = batch / dist.world_size, begin = dist.rank * per;
    for (int64_t i = 0; i < steps; ++i) {
      torch::manual_seed(1000 + i);  // the same global batch on every rank
      const auto pixels = torch::randn({batch, 3, s, s});
      auto tokens = torch::zeros({batch, cfg.text.context_length}, torch::kLong);
      tokens.select(1, 0).fill_(49406);
      tokens.narrow(1, 1, 6).random_(1000, 40000);
      tokens.select(1, 7).fill_(49407);
      const StepLosses l = step.run(pixels.slice(0, begin, begin + per), tokens.slice(0, begin, begin + per), i, 1e-4);
      if (dist.rank == 0) {
        std::printf("{\"step\": %lld, \"rows\": %lld, \"total\": %.9g, \"rafa\": %.9g, \"hycd\": %.9g, \"contrastive\": %.9g}\n",
                    static_cast<long long>(i), static_cast<long long>(l.global_rows), l.total, l.rafa, l.hycd,
                    l.contrastive);
      }
    }
    if (dist.rank == 0) {
      // Every parameter, flattened into one float32 vector, in name order.
      std::vector<at::Tensor> flat;
      for (const auto& [name, t] : model_state_dict(model)) flat.push_back(t.detach().to(torch::kFloat).reshape({-1}));
      const at::Tensor weights = torch::cat(flat).contiguous();
      SafetensorsWriter w;
      w.add_float32("weights", {weights.numel()}, weights.data_ptr<float>());
      w.write(argv[6]);
      const auto st = group.stats();
      std::fprintf(stderr, "collectives: %lld calls, all-reduce %lld B, all-gather %lld B, %.3f s\n",
                   static_cast<long long>(st.calls), static_cast<long long>(st.all_reduce_bytes),
                   static_cast<long long>(st.all_gather_bytes), st.seconds);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distributed_step: error: %s\n", e.what());
    return 1;
  }
}
