#include "tools/refinery-model/retrieval_comparison.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "core/base/error.h"

namespace refinery::model_tool {

RetrievalRanking rank_retrieval(const at::Tensor& queries, const at::Tensor& candidates,
                                const std::vector<std::vector<int64_t>>& positives, int k, int64_t block) {
  if (queries.dim() != 2 || candidates.dim() != 2 || queries.size(1) != candidates.size(1)) {
    throw invalid_argument("rank_retrieval: queries " + std::to_string(queries.dim()) + "-d and candidates " +
                           std::to_string(candidates.dim()) + "-d must be [N, D] with the same D");
  }
  const int64_t n_queries = queries.size(0), n_candidates = candidates.size(0);
  if (static_cast<int64_t>(positives.size()) != n_queries) {
    throw invalid_argument("rank_retrieval: " + std::to_string(positives.size()) + " positive lists for " +
                           std::to_string(n_queries) + " queries");
  }
  if (n_candidates == 0) throw invalid_argument("rank_retrieval: no candidates");
  k = static_cast<int>(std::clamp<int64_t>(k, 1, n_candidates));
  block = std::max<int64_t>(block, 1);

  const auto q = queries.to(torch::kFloat).contiguous();
  const auto c = candidates.to(torch::kFloat).t().contiguous();
  RetrievalRanking out;
  out.rank.reserve(n_queries);
  out.top.reserve(n_queries);
  out.top_scores.reserve(n_queries);
  for (int64_t begin = 0; begin < n_queries; begin += block) {
    const int64_t end = std::min(begin + block, n_queries);
    const auto scores = q.slice(0, begin, end).matmul(c);  // [B, C]
    std::vector<int64_t> rows, cols;
    for (int64_t i = begin; i < end; ++i) {
      if (positives[i].empty()) {
        throw invalid_argument("rank_retrieval: query " + std::to_string(i) + " has no ground-truth partner");
      }
      for (int64_t p : positives[i]) {
        if (p < 0 || p >= n_candidates) {
          throw invalid_argument("rank_retrieval: query " + std::to_string(i) + " names candidate " +
                                 std::to_string(p) + " of " + std::to_string(n_candidates));
        }
        rows.push_back(i - begin);
        cols.push_back(p);
      }
    }
    const auto row_t = torch::tensor(rows, torch::kLong), col_t = torch::tensor(cols, torch::kLong);
    auto positive_scores = torch::full_like(scores, -std::numeric_limits<float>::infinity());
    positive_scores.index_put_({row_t, col_t}, scores.index({row_t, col_t}));
    const auto best = std::get<0>(positive_scores.max(1));
    const auto rank = (scores > best.unsqueeze(1)).sum(1).to(torch::kLong).contiguous();
    const auto top = scores.topk(k, 1);
    const auto top_values = std::get<0>(top).contiguous(), top_indices = std::get<1>(top).contiguous();
    const auto rank_a = rank.accessor<int64_t, 1>();
    const auto values_a = top_values.accessor<float, 2>();
    const auto indices_a = top_indices.accessor<int64_t, 2>();
    for (int64_t i = 0; i < end - begin; ++i) {
      out.rank.push_back(rank_a[i]);
      std::vector<int64_t> ids(k);
      std::vector<float> values(k);
      for (int j = 0; j < k; ++j) {
        ids[j] = indices_a[i][j];
        values[j] = values_a[i][j];
      }
      out.top.push_back(std::move(ids));
      out.top_scores.push_back(std::move(values));
    }
  }
  return out;
}

double recall_at(const std::vector<int64_t>& rank, int k) {
  if (rank.empty()) return 0.0;
  const auto hits = std::count_if(rank.begin(), rank.end(), [k](int64_t r) { return r < k; });
  return static_cast<double>(hits) / static_cast<double>(rank.size());
}

DisagreementGroup find_disagreements(const std::vector<int64_t>& winner, const std::vector<int64_t>& loser, int k,
                                     size_t max_shown) {
  if (winner.size() != loser.size()) {
    throw invalid_argument("find_disagreements: " + std::to_string(winner.size()) + " vs " +
                           std::to_string(loser.size()) + " queries");
  }
  std::vector<Disagreement> all;
  for (size_t i = 0; i < winner.size(); ++i) {
    if (winner[i] < k && loser[i] >= k) all.push_back({static_cast<int64_t>(i), winner[i], loser[i]});
  }
  std::stable_sort(all.begin(), all.end(), [](const Disagreement& x, const Disagreement& y) {
    const int64_t gap_x = x.loser_rank - x.winner_rank, gap_y = y.loser_rank - y.winner_rank;
    if (gap_x != gap_y) return gap_x > gap_y;
    return x.loser_rank > y.loser_rank;
  });
  DisagreementGroup group;
  group.total = all.size();
  if (all.size() > max_shown) all.resize(max_shown);
  group.shown = std::move(all);
  return group;
}

}  // namespace refinery::model_tool
