#include "core/runtime/int8_linear.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <torch/version.h>

#include <mutex>
#include <vector>

#include "core/base/error.h"
#include "core/runtime/inference_precision.h"

namespace refinery {
namespace {

// The engines worth packing for on x86, best first.
std::vector<std::pair<at::QEngine, const char*>> preferred_engines() {
  return {
#if TORCH_VERSION_MAJOR >= 2
      {at::QEngine::X86, "x86"},
#endif
      {at::QEngine::FBGEMM, "fbgemm"},
      {at::QEngine::ONEDNN, "onednn"},
  };
}

// The engine to pack for, if this build has one.
c10::optional<std::pair<at::QEngine, const char*>> find_engine() {
  const auto& supported = at::globalContext().supportedQEngines();
  for (const auto& preferred : preferred_engines()) {
    for (const auto s : supported) {
      if (s == preferred.first) return preferred;
    }
  }
  return c10::nullopt;
}

// Packing reads the process-wide quantized engine; packs one at a time and
// puts back what was set.
std::mutex& engine_mutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

std::string int8_quantized_engine() {
  const auto engine = find_engine();
  return engine ? engine->second : "";
}

struct Int8Linear::Packed {
  c10::IValue params;  // the engine's LinearPackedParams (a TorchScript custom class)
  c10::OperatorHandle op;
};

Int8Linear::Int8Linear(const at::Tensor& weight, const at::Tensor& bias) {
  if (weight.dim() != 2 || weight.scalar_type() != at::kFloat || !weight.device().is_cpu()) {
    throw invalid_argument("int8 linear: the weight must be a 2-D float tensor on the CPU");
  }
  out_ = weight.size(0);
  in_ = weight.size(1);
  const auto found = find_engine();
  if (!found) check_int8_engine();  // throws: this build has no engine
  const at::QEngine engine = found->first;
  at::NoGradGuard no_grad;
  // Symmetric per output channel, as PyTorch's per-channel dynamic qconfig;
  // an all-zero row keeps a tiny positive scale.
  const auto w = weight.detach().contiguous();
  const auto scales = w.abs().amax({1}).div(127.0).clamp_min(1e-12).to(at::kDouble);
  const auto zero_points = at::zeros({out_}, at::TensorOptions().dtype(at::kLong));
  const auto qweight = at::quantize_per_channel(w, scales, zero_points, 0, at::kQInt8);
  c10::optional<at::Tensor> b;
  if (bias.defined()) b = bias.detach().to(at::kFloat).contiguous();

  static const c10::OperatorHandle prepack =
      c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
  static const c10::OperatorHandle dynamic =
      c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
  std::vector<c10::IValue> stack{qweight, b};
  {
    std::lock_guard<std::mutex> lock(engine_mutex());
    const at::QEngine previous = at::globalContext().qEngine();
    at::globalContext().setQEngine(engine);
    try {
      prepack.callBoxed(&stack);
    } catch (...) {
      at::globalContext().setQEngine(previous);
      throw;
    }
    at::globalContext().setQEngine(previous);
  }
  packed_ = std::make_shared<const Packed>(Packed{std::move(stack.at(0)), dynamic});
  bytes_ = out_ * in_ + out_ * static_cast<int64_t>(sizeof(double) + sizeof(int64_t)) +
           (bias.defined() ? out_ * static_cast<int64_t>(sizeof(float)) : 0);
}

at::Tensor Int8Linear::forward(const at::Tensor& x) const {
  if (x.dim() < 1 || x.size(-1) != in_) {
    throw invalid_argument("int8 linear: input has " + std::to_string(x.dim() < 1 ? 0 : x.size(-1)) +
                           " features, the layer takes " + std::to_string(in_));
  }
  auto sizes = x.sizes().vec();
  sizes.back() = out_;
  const auto rows = x.reshape({-1, in_}).to(at::kFloat).contiguous();
  std::vector<c10::IValue> stack{rows, packed_->params, /*reduce_range=*/false};
  packed_->op.callBoxed(&stack);
  return stack.at(0).toTensor().view(sizes);
}

}  // namespace refinery
