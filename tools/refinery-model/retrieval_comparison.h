// Retrieval of two models side by side, for `refinery-model compare`: the
// rank of each query's ground-truth partner under each model, each model's
// top k, recall@k, and the queries exactly one of the two gets right.
// Pure tensor logic; the command reads the data and writes the page.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace refinery::model_tool {

// One model answering every query of one direction (text->image or
// image->text). A query is correct at k when rank < k.
struct RetrievalRanking {
  // Per query: the number of candidates scoring strictly higher than its best
  // ground-truth partner (ties count in the query's favour), so 0 = a hit at rank 1.
  std::vector<int64_t> rank;
  std::vector<std::vector<int64_t>> top;  // per query: the k best candidates, best first
  std::vector<std::vector<float>> top_scores;
};

// Ranks `candidates` [C, D] for each of `queries` [Q, D] by dot product in
// float32 (cosine for L2-normalised rows), `block` queries at a time so the
// score matrix never exceeds block x C. positives[q] lists the candidates
// that are correct for query q (at least one each). k is clamped to [1, C].
RetrievalRanking rank_retrieval(const at::Tensor& queries, const at::Tensor& candidates,
                                const std::vector<std::vector<int64_t>>& positives, int k, int64_t block = 1024);

// Fraction of queries with rank < k.
double recall_at(const std::vector<int64_t>& rank, int k);

// A query that exactly one of two models gets right at k.
struct Disagreement {
  int64_t query = 0;
  int64_t winner_rank = 0;  // RetrievalRanking::rank of the model that is right (< k)
  int64_t loser_rank = 0;   // ... of the model that is wrong (>= k)
};

// The queries that `winner` gets right at k and `loser` does not, the largest
// gap (loser_rank - winner_rank) first; ties: the loser's rank highest first,
// then query order. `total` is how many there are; `shown` holds the first `max_shown`.
struct DisagreementGroup {
  size_t total = 0;
  std::vector<Disagreement> shown;
};
DisagreementGroup find_disagreements(const std::vector<int64_t>& winner, const std::vector<int64_t>& loser, int k,
                                     size_t max_shown);

}  // namespace refinery::model_tool
