// Alignment metrics (METHOD.md "Metrics") against a float64 loop
// implementation written here, plus hand-computed cases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/eval/alignment_metrics.h"
#include "support/errors.h"

namespace refinery {
namespace {

using Rows = std::vector<std::vector<double>>;

Rows random_rows(std::mt19937& rng, int n, int d) {
  std::normal_distribution<double> normal;
  Rows r(n, std::vector<double>(d));
  for (auto& row : r)
    for (double& x : row) x = static_cast<float>(normal(rng));
  return r;
}

torch::Tensor to_tensor(const Rows& rows) {
  std::vector<float> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  return torch::from_blob(flat.data(), {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())},
                          torch::kFloat32)
      .clone();
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k) s += a[k] * b[k];
  return s;
}

double sq_dist(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k) s += (a[k] - b[k]) * (a[k] - b[k]);
  return s;
}

Rows normalized(Rows r) {
  for (auto& row : r) {
    const double n = std::sqrt(dot(row, row));
    for (double& x : row) x /= n;
  }
  return r;
}

// The float64 reference, written from METHOD.md's definitions.
std::map<std::string, double> reference_metrics(const Rows& raw_images, const Rows& raw_texts,
                                                const std::vector<int64_t>& text_image) {
  const Rows x = normalized(raw_images), y = normalized(raw_texts);
  const size_t n = x.size(), m = y.size(), d = x[0].size();
  std::map<std::string, double> out;

  std::vector<double> cx(d, 0), cy(d, 0);
  for (const auto& row : x)
    for (size_t k = 0; k < d; ++k) cx[k] += row[k] / n;
  for (const auto& row : y)
    for (size_t k = 0; k < d; ++k) cy[k] += row[k] / m;
  out["modality_gap"] = sq_dist(cx, cy) / d;
  out["modality_gap_l2"] = std::sqrt(sq_dist(cx, cy));

  double align = 0;
  for (size_t j = 0; j < m; ++j) align += sq_dist(x[text_image[j]], y[j]);
  out["alignment"] = align / m;

  Rows all = x;
  all.insert(all.end(), y.begin(), y.end());
  double kernel = 0;
  for (size_t u = 0; u < all.size(); ++u)
    for (size_t v = 0; v < all.size(); ++v)
      if (u != v) kernel += std::exp(-2 * sq_dist(all[u], all[v]));
  out["uniformity"] = std::log(kernel / (all.size() * (all.size() - 1.0)));

  const int ks[] = {1, 5, 10};
  for (int k : ks) {
    // text -> image: sort the images by similarity; hit if the own image is in the top k.
    int hits = 0;
    for (size_t j = 0; j < m; ++j) {
      std::vector<std::pair<double, size_t>> ranked;
      for (size_t i = 0; i < n; ++i) ranked.push_back({-dot(y[j], x[i]), i});
      std::sort(ranked.begin(), ranked.end());
      for (int r = 0; r < k && r < static_cast<int>(n); ++r) hits += ranked[r].second == static_cast<size_t>(text_image[j]);
    }
    out["t2i_r" + std::to_string(k)] = static_cast<double>(hits) / m;
    // image -> text: hit if any of the image's texts is in the top k of all texts.
    int image_hits = 0, images_with_text = 0;
    for (size_t i = 0; i < n; ++i) {
      if (std::count(text_image.begin(), text_image.end(), static_cast<int64_t>(i)) == 0) continue;
      ++images_with_text;
      std::vector<std::pair<double, size_t>> ranked;
      for (size_t j = 0; j < m; ++j) ranked.push_back({-dot(x[i], y[j]), j});
      std::sort(ranked.begin(), ranked.end());
      bool hit = false;
      for (int r = 0; r < k && r < static_cast<int>(m); ++r) hit |= text_image[ranked[r].second] == static_cast<int64_t>(i);
      image_hits += hit;
    }
    out["i2t_r" + std::to_string(k)] = static_cast<double>(image_hits) / images_with_text;
  }
  return out;
}

const std::vector<std::string> kKeys = {"modality_gap", "modality_gap_l2", "alignment", "uniformity",
                                        "t2i_r1",       "t2i_r5",          "t2i_r10",   "i2t_r1",
                                        "i2t_r5",       "i2t_r10"};

void expect_metrics_near(const std::map<std::string, double>& actual, const std::map<std::string, double>& expected,
                         const std::string& what) {
  EXPECT_EQ(actual.size(), kKeys.size()) << what;
  for (const auto& key : kKeys) {
    ASSERT_TRUE(actual.count(key)) << what << ": missing " << key;
    const double tol = key.find("_r") != std::string::npos ? 1e-12 : 1e-5 * (1 + std::abs(expected.at(key)));
    EXPECT_NEAR(actual.at(key), expected.at(key), tol) << what << ": " << key;
  }
}

using testing::error_of;

TEST(AlignmentMetrics, MatchFloat64ReferenceWithSeveralTextsPerImageAcrossChunks) {
  std::mt19937 rng(21);
  const Rows images = random_rows(rng, 7, 5);
  const Rows texts = random_rows(rng, 13, 5);
  // Image 0 has four texts, image 6 none; others one or two.
  const std::vector<int64_t> owner = {0, 0, 1, 2, 0, 3, 3, 4, 5, 0, 1, 2, 5};
  const auto expected = reference_metrics(images, texts, owner);
  for (int64_t chunk : {1, 3, 4, 512}) {
    const auto got = alignment_metrics(to_tensor(images), to_tensor(texts), owner, AlignmentMetricsOptions{chunk});
    expect_metrics_near(got, expected, "chunk_rows=" + std::to_string(chunk));
  }
}

TEST(AlignmentMetrics, MatchFloat64ReferenceOnNoisyPairsWithPartialRecall) {
  std::mt19937 rng(22);
  const int n = 40, d = 8;
  const Rows images = random_rows(rng, n, d);
  Rows texts;
  std::vector<int64_t> owner;
  std::normal_distribution<double> noise(0.0, 0.9);
  for (int i = 0; i < n - 2; ++i) {  // the last two images have no caption
    for (int c = 0; c < 1 + i % 3; ++c) {
      std::vector<double> t = images[i];
      for (double& x : t) x = static_cast<float>(x + noise(rng));
      texts.push_back(t);
      owner.push_back(i);
    }
  }
  const auto expected = reference_metrics(images, texts, owner);
  // The case exercises partial recall, so ranks really are compared.
  ASSERT_GT(expected.at("t2i_r1"), 0.1);
  ASSERT_LT(expected.at("t2i_r1"), 0.95);
  ASSERT_LT(expected.at("t2i_r1"), expected.at("t2i_r10"));
  ASSERT_LT(expected.at("i2t_r1"), 0.99);
  const auto got = alignment_metrics(to_tensor(images), to_tensor(texts), owner, AlignmentMetricsOptions{7});
  expect_metrics_near(got, expected, "noisy pairs");
}

TEST(AlignmentMetrics, IdenticalEmbeddingsHaveNoGapPerfectAlignmentAndFullRecall) {
  std::mt19937 rng(23);
  const Rows images = random_rows(rng, 6, 4);
  Rows texts = images;
  for (size_t i = 0; i < texts.size(); ++i)
    for (double& x : texts[i]) x *= 0.5 + i;  // raw lengths differ; the metrics normalise
  std::vector<int64_t> owner = {0, 1, 2, 3, 4, 5};
  const auto got = alignment_metrics(to_tensor(images), to_tensor(texts), owner);
  EXPECT_NEAR(got.at("modality_gap"), 0.0, 1e-12);
  EXPECT_NEAR(got.at("modality_gap_l2"), 0.0, 1e-6);
  EXPECT_NEAR(got.at("alignment"), 0.0, 1e-12);
  for (const char* key : {"t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"}) {
    EXPECT_EQ(got.at(key), 1.0) << key;
  }
}

TEST(AlignmentMetrics, TwoSeparateConesByHand) {
  // Every image is e1 and every text e2 (D = 4): c_img - c_txt = e1 - e2.
  //   gap = (1 + 1) / 4, gap_l2 = sqrt(2), alignment = ||e1 - e2||^2 = 2.
  //   uniformity over 4 embeddings: 4 ordered same-modality pairs at distance 0
  //   and 8 cross pairs at squared distance 2 -> log((4 + 8 e^-4) / 12).
  const auto images = torch::tensor({1.f, 0.f, 0.f, 0.f, 3.f, 0.f, 0.f, 0.f}).reshape({2, 4});
  const auto texts = torch::tensor({0.f, 2.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f}).reshape({2, 4});
  const auto got = alignment_metrics(images, texts, {1, 0});
  EXPECT_NEAR(got.at("modality_gap"), 0.5, 1e-12);
  EXPECT_NEAR(got.at("modality_gap_l2"), std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(got.at("alignment"), 2.0, 1e-12);
  EXPECT_NEAR(got.at("uniformity"), std::log((4 + 8 * std::exp(-4.0)) / 12), 1e-6);
}

TEST(AlignmentMetrics, ImagesWithoutTextAreLeftOutOfImageToText) {
  // Image 0 and its text match exactly; image 1 has no text. Were image 1
  // counted, i2t_r1 would be 1/2.
  const auto images = torch::tensor({1.f, 0.f, 0.f, 1.f}).reshape({2, 2});
  const auto texts = torch::tensor({1.f, 0.f}).reshape({1, 2});
  const auto got = alignment_metrics(images, texts, {0});
  EXPECT_EQ(got.at("i2t_r1"), 1.0);
  EXPECT_EQ(got.at("t2i_r1"), 1.0);
  // A text closer to the wrong image misses at rank 1 but hits at rank 5 (only 2 images).
  const auto wrong = alignment_metrics(images, torch::tensor({0.1f, 1.f}).reshape({1, 2}), {0});
  EXPECT_EQ(wrong.at("t2i_r1"), 0.0);
  EXPECT_EQ(wrong.at("t2i_r5"), 1.0);
}

TEST(AlignmentMetrics, RejectsBadShapesAndOwners) {
  const auto images = torch::randn({3, 4});
  const auto texts = torch::randn({5, 4});
  const Error dim = error_of([&] { alignment_metrics(images, torch::randn({5, 3}), {0, 0, 1, 1, 2}); });
  EXPECT_EQ(dim.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(dim.what()).find("[5, 3]"), std::string::npos) << dim.what();
  const Error count = error_of([&] { alignment_metrics(images, texts, {0, 1, 2}); });
  EXPECT_EQ(count.code(), ErrorCode::kInvalidArgument);
  const Error range = error_of([&] { alignment_metrics(images, texts, {0, 1, 9, 2, 2}); });
  EXPECT_EQ(range.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(range.what()).find("text_image[2] = 9"), std::string::npos) << range.what();
  const Error negative = error_of([&] { alignment_metrics(images, texts, {0, 1, 2, -1, 2}); });
  EXPECT_NE(std::string(negative.what()).find("text_image[3] = -1"), std::string::npos) << negative.what();
}

}  // namespace
}  // namespace refinery
