#include "core/eval/alignment_metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/base/error.h"
#include "core/runtime/tensor_shape.h"

namespace refinery {
namespace {

// Rows scaled to unit L2 norm in double (a zero row stays zero).
at::Tensor normalized_rows(const at::Tensor& x) {
  const at::Tensor x64 = x.detach().to(torch::kFloat64);
  return x64 / x64.norm(2, {1}, true).clamp_min(1e-12);
}

constexpr int64_t kTopK[] = {1, 5, 10};

// A similarity block holds at most this many entries (32 MB in double), so
// thousands of candidates shrink the block below chunk_rows.
constexpr int64_t kMaxBlockEntries = int64_t{1} << 22;

int64_t block_rows(int64_t chunk_rows, int64_t columns) {
  return std::max<int64_t>(1, std::min(chunk_rows, kMaxBlockEntries / std::max<int64_t>(1, columns)));
}

}  // namespace

std::map<std::string, double> alignment_metrics(const at::Tensor& image_features, const at::Tensor& text_features,
                                                const std::vector<int64_t>& text_image,
                                                const AlignmentMetricsOptions& options) {
  if (!image_features.defined() || !text_features.defined()) {
    throw invalid_argument("alignment_metrics: image_features/text_features is undefined");
  }
  if (image_features.dim() != 2 || text_features.dim() != 2 || image_features.size(1) != text_features.size(1)) {
    throw invalid_argument("alignment_metrics: image_features " + shape_of(image_features) + " and text_features " +
                           shape_of(text_features) + " must be [N, D] and [M, D]");
  }
  const int64_t n = image_features.size(0);
  const int64_t m = text_features.size(0);
  if (n == 0 || m == 0) {
    throw invalid_argument("alignment_metrics: need at least one image and one text, got " + shape_of(image_features) +
                           " and " + shape_of(text_features));
  }
  if (static_cast<int64_t>(text_image.size()) != m) {
    throw invalid_argument("alignment_metrics: text_image has " + std::to_string(text_image.size()) +
                           " entries for " + std::to_string(m) + " texts");
  }
  for (int64_t j = 0; j < m; ++j) {
    if (text_image[j] < 0 || text_image[j] >= n) {
      throw invalid_argument("alignment_metrics: text_image[" + std::to_string(j) + "] = " +
                             std::to_string(text_image[j]) + " is not an image index in [0, " + std::to_string(n) +
                             ")");
    }
  }
  if (options.chunk_rows <= 0) {
    throw invalid_argument("alignment_metrics: chunk_rows must be > 0, got " + std::to_string(options.chunk_rows));
  }
  const auto device = image_features.device();

  const at::Tensor x64 = normalized_rows(image_features);
  const at::Tensor y64 = normalized_rows(text_features).to(device);
  const at::Tensor x32 = x64.to(torch::kFloat32);
  const at::Tensor y32 = y64.to(torch::kFloat32);
  const at::Tensor owner = torch::tensor(text_image, torch::TensorOptions().dtype(torch::kInt64)).to(device);

  std::map<std::string, double> out;

  // Centroid gap and pair alignment, in double throughout.
  const at::Tensor centroid_gap = x64.mean(0) - y64.mean(0);
  out["modality_gap"] = centroid_gap.pow(2).mean().item<double>();
  out["modality_gap_l2"] = centroid_gap.norm().item<double>();
  out["alignment"] = (x64.index_select(0, owner) - y64).pow(2).sum(1).mean().item<double>();

  // Uniformity over all N + M embeddings. The kernel is symmetric, so each
  // block of rows [r0, r0 + rows) is scored only against columns v > u and the
  // sum doubled; the diagonal (u == v) is masked out, not subtracted, so
  // rounding cannot leave a residue of it.
  {
    const at::Tensor all32 = torch::cat({x32, y32}, 0);
    const at::Tensor sq_norm = torch::cat({x64, y64}, 0).pow(2).sum(1);
    const int64_t k = n + m;  // >= 2
    const int64_t chunk = block_rows(options.chunk_rows, k);
    double sum = 0;
    for (int64_t r0 = 0; r0 < k; r0 += chunk) {
      const int64_t rows = std::min(chunk, k - r0);
      const at::Tensor columns = all32.narrow(0, r0, k - r0);
      const at::Tensor dot = all32.narrow(0, r0, rows).matmul(columns.t()).to(torch::kFloat64);  // [rows, k - r0]
      const at::Tensor sq_dist =
          (sq_norm.narrow(0, r0, rows).unsqueeze(1) + sq_norm.narrow(0, r0, k - r0).unsqueeze(0) - 2.0 * dot)
              .clamp_min(0.0);
      at::Tensor kernel = (-2.0 * sq_dist).exp();
      kernel.narrow(1, 0, rows).triu_(1);  // within the block's own rows keep v > u only
      sum += kernel.sum().item<double>();
    }
    out["uniformity"] = std::log(2.0 * sum / (static_cast<double>(k) * static_cast<double>(k - 1)));
  }

  // Text -> image: rank of the text's own image among the N images.
  {
    int64_t hits[3] = {0, 0, 0};
    const int64_t chunk = block_rows(options.chunk_rows, n);
    for (int64_t r0 = 0; r0 < m; r0 += chunk) {
      const int64_t rows = std::min(chunk, m - r0);
      const at::Tensor sims = y32.narrow(0, r0, rows).matmul(x32.t());  // [rows, N]
      const at::Tensor own = sims.gather(1, owner.narrow(0, r0, rows).unsqueeze(1));
      const at::Tensor better = (sims > own).sum(1);  // images scored strictly above the text's own
      for (int i = 0; i < 3; ++i) hits[i] += (better < kTopK[i]).sum().item<int64_t>();
    }
    for (int i = 0; i < 3; ++i) {
      out["t2i_r" + std::to_string(kTopK[i])] = static_cast<double>(hits[i]) / static_cast<double>(m);
    }
  }

  // Image -> text: rank of the image's best-scoring own text among the M texts.
  {
    int64_t hits[3] = {0, 0, 0};
    int64_t queries = 0;
    const int64_t chunk = block_rows(options.chunk_rows, m);
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      const int64_t rows = std::min(chunk, n - r0);
      const at::Tensor sims = x32.narrow(0, r0, rows).matmul(y32.t());  // [rows, M]
      const at::Tensor image_ids = torch::arange(r0, r0 + rows, owner.options()).unsqueeze(1);
      const at::Tensor mine = owner.unsqueeze(0) == image_ids;  // [rows, M]: text belongs to the row's image
      const at::Tensor has_text = mine.any(1);
      const at::Tensor best_own =
          sims.masked_fill(mine.logical_not(), -std::numeric_limits<float>::infinity()).amax(1, true);
      const at::Tensor better = (sims > best_own).sum(1);
      queries += has_text.sum().item<int64_t>();
      for (int i = 0; i < 3; ++i) hits[i] += ((better < kTopK[i]) & has_text).sum().item<int64_t>();
    }
    for (int i = 0; i < 3; ++i) {
      out["i2t_r" + std::to_string(kTopK[i])] =
          queries > 0 ? static_cast<double>(hits[i]) / static_cast<double>(queries) : std::nan("");
    }
  }
  return out;
}

}  // namespace refinery
