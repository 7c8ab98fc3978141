#include "core/train/training_precision.h"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <mutex>

#include "core/base/error.h"
#include "core/model/clip_config.h"
#include "core/model/clip_model.h"
#include "core/runtime/autocast_guard.h"

namespace refinery {
namespace {

// Empty when a bf16 step runs on `device`, else why not.
std::string try_bf16_step(const c10::Device& device) {
  try {
    torch::AutoGradMode grad(true);  // the probe needs a backward, whatever the caller's mode
    torch::manual_seed(0);
    const ClipConfig config = builtin_architecture("tiny");
    ClipModel model(config);
    model->to(device, torch::kFloat32);
    const int64_t side = config.vision.image_size;
    const auto pixels = torch::randn({2, 3, side, side}, torch::TensorOptions().device(device));
    const auto tokens =
        torch::randint(1, config.text.vocab_size, {2, config.text.context_length}, torch::TensorOptions().dtype(torch::kLong).device(device));
    torch::Tensor loss;
    {
      AutocastGuard autocast(device.type(), true);
      loss = model->encode_image(pixels).to(torch::kFloat32).matmul(model->encode_text(tokens).to(torch::kFloat32).t()).sum();
    }
    loss.backward();
    if (!std::isfinite(loss.item<double>())) return "a bf16 step gave a non-finite loss";
    return "";
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    return what.substr(0, what.find('\n'));
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

void check_training_precision(TrainingPrecision precision, const c10::Device& device) {
  if (precision != TrainingPrecision::kBFloat16) return;
  static std::mutex mu;
  static std::map<std::string, std::string> known;  // device -> reason ("" = runs)
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = known.find(device.str());
    if (it != known.end()) {
      reason = it->second;
    } else {
      reason = try_bf16_step(device);
      known[device.str()] = reason;
    }
  }
  if (!reason.empty()) {
    throw invalid_argument("precision bf16 is not available on " + device.str() + " (" + reason +
                           "); use fp32, the default");
  }
}

}  // namespace refinery
