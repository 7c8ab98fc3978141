// The CLIP-Refine training objectives against independent float64
// implementations written here with plain loops (METHOD.md is the spec), with
// gradients checked against central finite differences of those loops.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/base/error.h"
#include "core/train/contrastive_loss.h"
#include "core/train/hycd_loss.h"
#include "core/train/rafa_loss.h"
#include "core/train/refine_objective.h"
#include "support/errors.h"

namespace refinery {
namespace {

// ---------------------------------------------------------------- float64 reference

struct Mat {
  int64_t rows = 0, cols = 0;
  std::vector<double> v;
  double& at(int64_t r, int64_t c) { return v[r * cols + c]; }
  double at(int64_t r, int64_t c) const { return v[r * cols + c]; }
};

// Random values rounded to float32, so the float32 code and the float64
// reference see exactly the same numbers.
Mat random_mat(std::mt19937& rng, int64_t rows, int64_t cols, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  Mat m{rows, cols, std::vector<double>(rows * cols)};
  for (double& x : m.v) x = static_cast<float>(normal(rng));
  return m;
}

torch::Tensor to_tensor(const Mat& m, torch::Dtype dtype = torch::kFloat32, bool requires_grad = false) {
  std::vector<double> copy = m.v;
  auto t = torch::from_blob(copy.data(), {m.rows, m.cols}, torch::kFloat64).clone().to(dtype);
  return t.set_requires_grad(requires_grad);
}

Mat to_mat(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat64).contiguous();
  Mat m{c.size(0), c.size(1), std::vector<double>(c.numel())};
  std::copy(c.data_ptr<double>(), c.data_ptr<double>() + c.numel(), m.v.begin());
  return m;
}

double dot_rows(const Mat& a, int64_t i, const Mat& b, int64_t j) {
  double s = 0;
  for (int64_t d = 0; d < a.cols; ++d) s += a.at(i, d) * b.at(j, d);
  return s;
}

// logits[i][j] = a_i . b_j / T
Mat logits_of(const Mat& a, const Mat& b, double temperature) {
  Mat out{a.rows, b.rows, std::vector<double>(a.rows * b.rows)};
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < b.rows; ++j) out.at(i, j) = dot_rows(a, i, b, j) / temperature;
  return out;
}

Mat transpose(const Mat& a) {
  Mat out{a.cols, a.rows, std::vector<double>(a.v.size())};
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j) out.at(j, i) = a.at(i, j);
  return out;
}

std::vector<double> softmax_row(const Mat& a, int64_t i) {
  double mx = -1e300;
  for (int64_t j = 0; j < a.cols; ++j) mx = std::max(mx, a.at(i, j));
  std::vector<double> p(a.cols);
  double z = 0;
  for (int64_t j = 0; j < a.cols; ++j) z += (p[j] = std::exp(a.at(i, j) - mx));
  for (double& x : p) x /= z;
  return p;
}

double ref_rafa(const Mat& fi, const Mat& ft, const Mat& zi, const Mat& zt) {
  double a = 0, b = 0;
  for (size_t k = 0; k < fi.v.size(); ++k) a += (fi.v[k] - zi.v[k]) * (fi.v[k] - zi.v[k]);
  for (size_t k = 0; k < ft.v.size(); ++k) b += (ft.v[k] - zt.v[k]) * (ft.v[k] - zt.v[k]);
  return a / fi.v.size() + b / ft.v.size();
}

// T^2 * sum_ij q_ij (log q_ij - log p_ij) / B with q = alpha I + (1 - alpha) softmax(t), p = softmax(s).
double ref_kd(const Mat& s, const Mat& t, double alpha, double temperature) {
  double total = 0;
  for (int64_t i = 0; i < s.rows; ++i) {
    const std::vector<double> teacher = softmax_row(t, i), student = softmax_row(s, i);
    for (int64_t j = 0; j < s.cols; ++j) {
      const double q = alpha * (i == j ? 1.0 : 0.0) + (1 - alpha) * teacher[j];
      if (q > 0) total += q * (std::log(q) - std::log(student[j]));
    }
  }
  return temperature * temperature * total / s.rows;
}

double ref_hycd(const Mat& fi, const Mat& ft, const Mat& gi, const Mat& gt, double alpha, double temperature) {
  const Mat s = logits_of(fi, ft, temperature), t = logits_of(gi, gt, temperature);
  return (ref_kd(s, t, alpha, temperature) + ref_kd(transpose(s), transpose(t), alpha, temperature)) / 2;
}

double ref_pair_align(const Mat& fi, const Mat& ft) {
  double total = 0;
  for (size_t k = 0; k < fi.v.size(); ++k) total += (fi.v[k] - ft.v[k]) * (fi.v[k] - ft.v[k]);
  return total / fi.rows;
}

Mat normalized(const Mat& a) {
  Mat out = a;
  for (int64_t i = 0; i < a.rows; ++i) {
    const double n = std::sqrt(dot_rows(a, i, a, i));
    for (int64_t d = 0; d < a.cols; ++d) out.at(i, d) /= n;
  }
  return out;
}

// Mean over rows of -log softmax(logits)[i][i].
double ref_diag_ce(const Mat& logits) {
  double total = 0;
  for (int64_t i = 0; i < logits.rows; ++i) total -= std::log(softmax_row(logits, i)[i]);
  return total / logits.rows;
}

double ref_contrastive(const Mat& fi, const Mat& ft, double logit_scale, bool normalize) {
  const Mat a = normalize ? normalized(fi) : fi, b = normalize ? normalized(ft) : ft;
  Mat logits = logits_of(a, b, 1.0);
  for (double& x : logits.v) x *= std::exp(logit_scale);
  return (ref_diag_ce(logits) + ref_diag_ce(transpose(logits))) / 2;
}

// Central finite differences of f with respect to every element of *x.
Mat numeric_grad(const std::function<double()>& f, Mat* x, double h = 1e-6) {
  Mat g{x->rows, x->cols, std::vector<double>(x->v.size())};
  for (size_t k = 0; k < x->v.size(); ++k) {
    const double keep = x->v[k];
    x->v[k] = keep + h;
    const double up = f();
    x->v[k] = keep - h;
    const double down = f();
    x->v[k] = keep;
    g.v[k] = (up - down) / (2 * h);
  }
  return g;
}

void expect_close(const Mat& actual, const Mat& expected, double tol, const std::string& what) {
  ASSERT_EQ(actual.v.size(), expected.v.size()) << what;
  for (size_t k = 0; k < actual.v.size(); ++k) {
    EXPECT_NEAR(actual.v[k], expected.v[k], tol * (1 + std::abs(expected.v[k]))) << what << " element " << k;
  }
}

double value(const torch::Tensor& t) { return t.item<double>(); }

using testing::error_of;

// ---------------------------------------------------------------- RaFA

TEST(RafaLoss, HandComputedTwoByTwo) {
  // f_i - z = [[0, 1], [2, 3]] -> mse 14/4; f_t - z = [[-1, 0], [0, -1]] -> mse 2/4.
  const auto fi = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).reshape({2, 2});
  const auto ft = torch::tensor({0.0f, 1.0f, 1.0f, 0.0f}).reshape({2, 2});
  const auto z = torch::ones({2, 2});
  EXPECT_NEAR(value(rafa_loss(fi, ft, z, z)), 4.0, 1e-6);
}

TEST(RafaLoss, MatchesFloat64ReferenceWithGradients) {
  std::mt19937 rng(1);
  for (auto [b, d] : {std::pair<int64_t, int64_t>{3, 4}, {5, 8}, {4, 6}}) {
    Mat fi = random_mat(rng, b, d), ft = random_mat(rng, b, d), zi = random_mat(rng, b, d), zt = random_mat(rng, b, d);
    auto tfi = to_tensor(fi, torch::kFloat32, true), tft = to_tensor(ft, torch::kFloat32, true);
    auto loss = rafa_loss(tfi, tft, to_tensor(zi), to_tensor(zt));
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
    EXPECT_EQ(loss.dim(), 0);
    EXPECT_NEAR(value(loss), ref_rafa(fi, ft, zi, zt), 1e-5);
    loss.backward();
    expect_close(to_mat(tfi.grad()), numeric_grad([&] { return ref_rafa(fi, ft, zi, zt); }, &fi), 1e-5, "d/df_i");
    expect_close(to_mat(tft.grad()), numeric_grad([&] { return ref_rafa(fi, ft, zi, zt); }, &ft), 1e-5, "d/df_t");
  }
}

TEST(RafaLoss, ComputesInFloat32WhateverTheInputDtype) {
  std::mt19937 rng(2);
  Mat fi = random_mat(rng, 4, 5), ft = random_mat(rng, 4, 5), z = random_mat(rng, 4, 5);
  const double expected = ref_rafa(fi, ft, z, z);
  for (auto dtype : {torch::kFloat64, torch::kFloat16, torch::kBFloat16}) {
    auto loss = rafa_loss(to_tensor(fi, dtype), to_tensor(ft, dtype), to_tensor(z, dtype), to_tensor(z, dtype));
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32) << dtype;
    EXPECT_NEAR(value(loss), expected, dtype == torch::kFloat64 ? 1e-5 : 0.05 * expected) << dtype;
  }
}

TEST(RafaLoss, RejectsMismatchedShapes) {
  const Error e = error_of([] { rafa_loss(torch::zeros({3, 4}), torch::zeros({3, 4}), torch::zeros({3, 5}), torch::zeros({3, 4})); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("z_image"), std::string::npos) << e.what();
}

// ---------------------------------------------------------------- RaFA prior

TEST(RafaPrior, SameSeedAndStepDrawTheSameNoiseOtherStepsDiffer) {
  RafaOptions o;
  auto a = sample_rafa_prior(o, 16, 32, 42, 7, torch::kCPU).first;
  auto again = sample_rafa_prior(o, 16, 32, 42, 7, torch::kCPU).first;
  auto next_step = sample_rafa_prior(o, 16, 32, 42, 8, torch::kCPU).first;
  auto other_seed = sample_rafa_prior(o, 16, 32, 43, 7, torch::kCPU).first;
  EXPECT_EQ(a.scalar_type(), torch::kFloat32);
  EXPECT_EQ(a.sizes(), torch::IntArrayRef({16, 32}));
  EXPECT_TRUE(torch::equal(a, again));
  EXPECT_FALSE(torch::allclose(a, next_step));
  EXPECT_FALSE(torch::allclose(a, other_seed));
  // Independent of anything drawn before (no hidden generator state): drawing
  // other steps in between and torch's own RNG changes nothing.
  torch::manual_seed(123);
  (void)torch::randn({100});
  (void)sample_rafa_prior(o, 3, 3, 1, 1, torch::kCPU);
  EXPECT_TRUE(torch::equal(a, sample_rafa_prior(o, 16, 32, 42, 7, torch::kCPU).first));
  // Steps are not shifted copies of each other.
  const double corr = (a * next_step).mean().item<double>();
  EXPECT_LT(std::abs(corr), 0.2);
}

TEST(RafaPrior, NormalHasTheRequestedMeanStdAndShape) {
  RafaOptions o;
  o.mu = 0.5;
  o.sigma = 2.0;
  auto z = sample_rafa_prior(o, 1000, 100, 9, 3, torch::kCPU).first.to(torch::kFloat64);
  EXPECT_NEAR(z.mean().item<double>(), 0.5, 0.03);  // standard error 0.0063
  EXPECT_NEAR(z.std().item<double>(), 2.0, 0.02);
  // Normal, not some other unit-variance law: 68.3% within one sigma, 95.4% within two.
  const auto dev = (z - 0.5).abs() / 2.0;
  EXPECT_NEAR((dev < 1).to(torch::kFloat64).mean().item<double>(), 0.6827, 0.01);
  EXPECT_NEAR((dev < 2).to(torch::kFloat64).mean().item<double>(), 0.9545, 0.005);
}

TEST(RafaPrior, UniformHasMeanMuStdSigmaAndTheRightBounds) {
  RafaOptions o;
  o.prior = parse_rafa_prior("uniform");
  o.mu = -1.0;
  o.sigma = 0.5;
  auto z = sample_rafa_prior(o, 500, 200, 5, 0, torch::kCPU).first.to(torch::kFloat64);
  const double half = std::sqrt(3.0) * 0.5;
  EXPECT_NEAR(z.mean().item<double>(), -1.0, 0.01);
  EXPECT_NEAR(z.std().item<double>(), 0.5, 0.005);
  EXPECT_GE(z.min().item<double>(), -1.0 - half - 1e-6);
  EXPECT_LE(z.max().item<double>(), -1.0 + half + 1e-6);
  EXPECT_LT(z.min().item<double>(), -1.0 - half + 0.01);  // fills the whole interval
  EXPECT_GT(z.max().item<double>(), -1.0 + half - 0.01);
  // Flat: each quarter of the interval holds a quarter of the samples.
  const auto u = (z - (-1.0 - half)) / (2 * half);
  for (int q = 0; q < 4; ++q) {
    const double frac = ((u >= q * 0.25) & (u < (q + 1) * 0.25)).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(frac, 0.25, 0.01) << "quarter " << q;
  }
}

TEST(RafaPrior, SharedGivesOneTensorIndependentGivesTwoUncorrelated) {
  RafaOptions shared;
  auto [zi, zt] = sample_rafa_prior(shared, 200, 50, 1, 2, torch::kCPU);
  EXPECT_TRUE(torch::equal(zi, zt));

  RafaOptions separate;
  separate.shared = false;
  auto [ui, ut] = sample_rafa_prior(separate, 200, 50, 1, 2, torch::kCPU);
  EXPECT_FALSE(torch::allclose(ui, ut));
  EXPECT_LT(std::abs((ui * ut).mean().item<double>()), 0.03);  // standard error 0.0045
  EXPECT_NEAR(ut.std().item<double>(), 1.0, 0.03);
  auto [vi, vt] = sample_rafa_prior(separate, 200, 50, 1, 2, torch::kCPU);
  EXPECT_TRUE(torch::equal(ui, vi));
  EXPECT_TRUE(torch::equal(ut, vt));
}

TEST(RafaPrior, ZeroSigmaPinsEveryValueToMu) {
  RafaOptions o;
  o.mu = 0.25;
  o.sigma = 0.0;
  auto z = sample_rafa_prior(o, 4, 8, 3, 0, torch::kCPU).first;
  EXPECT_TRUE(torch::equal(z, torch::full({4, 8}, 0.25f)));
}

TEST(RafaPrior, BadOptionsAndNamesAreRejected) {
  const Error e = error_of([] { parse_rafa_prior("gaussian"); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  const std::string m = e.what();
  EXPECT_NE(m.find("gaussian"), std::string::npos) << m;
  EXPECT_NE(m.find("normal"), std::string::npos) << m;
  EXPECT_NE(m.find("uniform"), std::string::npos) << m;
  EXPECT_EQ(parse_rafa_prior("normal"), RafaPrior::kNormal);

  RafaOptions o;
  o.sigma = -1;
  const Error s = error_of([&] { sample_rafa_prior(o, 2, 2, 0, 0, torch::kCPU); });
  EXPECT_NE(std::string(s.what()).find("sigma"), std::string::npos) << s.what();
}

// ---------------------------------------------------------------- HyCD

TEST(HycdLoss, HandComputedTwoByTwo) {
  // Teacher features 0 -> teacher softmax is uniform, q = [[.75, .25], [.25, .75]] with alpha 0.5.
  const auto g = torch::zeros({2, 2});
  const auto eye = torch::eye(2);
  HycdOptions o;  // alpha 0.5, T 1
  // Student s = diag(ln 3) -> softmax rows [3/4, 1/4] = q: the loss is 0.
  EXPECT_NEAR(value(hycd_loss(std::log(3.0) * eye, eye, g, g, o)), 0.0, 1e-6);
  // Student s = 0 -> uniform rows: each row gives .75 ln(.75/.5) + .25 ln(.25/.5).
  const double expected = 0.75 * std::log(1.5) + 0.25 * std::log(0.5);  // 0.130812
  EXPECT_NEAR(value(hycd_loss(torch::zeros({2, 2}), eye, g, g, o)), expected, 1e-6);
}

TEST(HycdLoss, MatchesFloat64ReferenceWithGradients) {
  std::mt19937 rng(3);
  struct Case {
    int64_t b, d;
    double alpha, temperature;
  };
  for (const Case c : {Case{3, 4, 0.5, 1.0}, Case{5, 8, 0.3, 2.0}, Case{4, 6, 0.9, 0.5}, Case{5, 4, 0.0, 1.0}}) {
    Mat fi = random_mat(rng, c.b, c.d), ft = random_mat(rng, c.b, c.d);
    const Mat gi = random_mat(rng, c.b, c.d), gt = random_mat(rng, c.b, c.d);
    auto tfi = to_tensor(fi, torch::kFloat32, true), tft = to_tensor(ft, torch::kFloat32, true);
    auto loss = hycd_loss(tfi, tft, to_tensor(gi), to_tensor(gt), HycdOptions{c.alpha, c.temperature});
    const auto ref = [&] { return ref_hycd(fi, ft, gi, gt, c.alpha, c.temperature); };
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
    EXPECT_NEAR(value(loss), ref(), 1e-5 * (1 + ref())) << "B=" << c.b << " alpha=" << c.alpha;
    loss.backward();
    expect_close(to_mat(tfi.grad()), numeric_grad(ref, &fi), 1e-4, "d/df_i");
    expect_close(to_mat(tft.grad()), numeric_grad(ref, &ft), 1e-4, "d/df_t");
  }
}

TEST(HycdLoss, AlphaOneIsCrossEntropyOnTheIdentity) {
  std::mt19937 rng(4);
  const Mat fi = random_mat(rng, 5, 6), ft = random_mat(rng, 5, 6), gi = random_mat(rng, 5, 6), gt = random_mat(rng, 5, 6);
  const Mat s = logits_of(fi, ft, 1.0);
  const double ce = (ref_diag_ce(s) + ref_diag_ce(transpose(s))) / 2;
  EXPECT_NEAR(value(hycd_loss(to_tensor(fi), to_tensor(ft), to_tensor(gi), to_tensor(gt), HycdOptions{1.0, 1.0})), ce,
              1e-5 * (1 + ce));
  // ... which is CLIP's loss on raw features with scale exp(0) = 1.
  EXPECT_NEAR(value(contrastive_loss(to_tensor(fi), to_tensor(ft), torch::zeros({}), ContrastiveOptions{false})), ce,
              1e-5 * (1 + ce));
}

TEST(HycdLoss, AlphaZeroIsKlFromTheTeacher) {
  std::mt19937 rng(5);
  const Mat fi = random_mat(rng, 4, 5), ft = random_mat(rng, 4, 5), gi = random_mat(rng, 4, 5), gt = random_mat(rng, 4, 5);
  // KL(p_t || p_s) = sum p_t log(p_t / p_s), batch mean, both directions.
  auto kl = [](const Mat& s, const Mat& t) {
    double total = 0;
    for (int64_t i = 0; i < s.rows; ++i) {
      const auto pt = softmax_row(t, i), ps = softmax_row(s, i);
      for (int64_t j = 0; j < s.cols; ++j) total += pt[j] * std::log(pt[j] / ps[j]);
    }
    return total / s.rows;
  };
  const Mat s = logits_of(fi, ft, 1.0), t = logits_of(gi, gt, 1.0);
  const double expected = (kl(s, t) + kl(transpose(s), transpose(t))) / 2;
  EXPECT_NEAR(value(hycd_loss(to_tensor(fi), to_tensor(ft), to_tensor(gi), to_tensor(gt), HycdOptions{0.0, 1.0})),
              expected, 1e-5 * (1 + expected));
  // A student equal to its teacher has nothing to learn.
  EXPECT_NEAR(value(hycd_loss(to_tensor(gi), to_tensor(gt), to_tensor(gi), to_tensor(gt), HycdOptions{0.0, 1.0})), 0.0,
              1e-6);
}

TEST(HycdLoss, TeacherGetsNoGradient) {
  std::mt19937 rng(6);
  auto fi = to_tensor(random_mat(rng, 4, 5), torch::kFloat32, true);
  auto ft = to_tensor(random_mat(rng, 4, 5), torch::kFloat32, true);
  auto gi = to_tensor(random_mat(rng, 4, 5), torch::kFloat32, true);
  auto gt = to_tensor(random_mat(rng, 4, 5), torch::kFloat32, true);
  hycd_loss(fi, ft, gi, gt, HycdOptions{}).backward();
  EXPECT_TRUE(fi.grad().defined());
  EXPECT_GT(fi.grad().abs().sum().item<double>(), 0);
  EXPECT_FALSE(gi.grad().defined());
  EXPECT_FALSE(gt.grad().defined());
}

TEST(HycdLoss, TemperatureDividesTheLogitsAndScalesByTSquared) {
  std::mt19937 rng(7);
  const Mat fi = random_mat(rng, 5, 4), ft = random_mat(rng, 5, 4), gi = random_mat(rng, 5, 4), gt = random_mat(rng, 5, 4);
  const double temperature = 3.0;
  const double at_t = value(hycd_loss(to_tensor(fi), to_tensor(ft), to_tensor(gi), to_tensor(gt), {0.5, temperature}));
  // Dividing one side of each dot product by T at T = 1 gives the same softmaxes.
  const double at_one = value(hycd_loss(to_tensor(fi) / temperature, to_tensor(ft), to_tensor(gi) / temperature,
                                        to_tensor(gt), {0.5, 1.0}));
  EXPECT_NEAR(at_t, temperature * temperature * at_one, 1e-5 * (1 + at_t));
  EXPECT_NE(at_t, at_one);
}

TEST(HycdLoss, ComputesInFloat32AndRejectsBadOptions) {
  std::mt19937 rng(8);
  const Mat fi = random_mat(rng, 3, 4), ft = random_mat(rng, 3, 4), gi = random_mat(rng, 3, 4), gt = random_mat(rng, 3, 4);
  auto loss = hycd_loss(to_tensor(fi, torch::kFloat64), to_tensor(ft, torch::kFloat16), to_tensor(gi, torch::kFloat64),
                        to_tensor(gt, torch::kFloat64), HycdOptions{});
  EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
  EXPECT_NEAR(value(loss), ref_hycd(fi, ft, gi, gt, 0.5, 1.0), 0.01);

  const Error a = error_of([&] { hycd_loss(to_tensor(fi), to_tensor(ft), to_tensor(gi), to_tensor(gt), {1.5, 1.0}); });
  EXPECT_EQ(a.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(a.what()).find("alpha"), std::string::npos) << a.what();
  const Error t = error_of([&] { hycd_loss(to_tensor(fi), to_tensor(ft), to_tensor(gi), to_tensor(gt), {0.5, 0.0}); });
  EXPECT_NE(std::string(t.what()).find("temperature"), std::string::npos) << t.what();
  const Error b = error_of([&] { hycd_loss(to_tensor(fi), to_tensor(ft), torch::zeros({4, 4}), torch::zeros({4, 4}), {}); });
  EXPECT_EQ(b.code(), ErrorCode::kInvalidArgument);
}

TEST(PairAlignmentLoss, MatchesFloat64ReferenceWithGradients) {
  std::mt19937 rng(9);
  Mat fi = random_mat(rng, 4, 7), ft = random_mat(rng, 4, 7);
  auto tfi = to_tensor(fi, torch::kFloat32, true), tft = to_tensor(ft, torch::kFloat32, true);
  auto loss = pair_alignment_loss(tfi, tft);
  EXPECT_NEAR(value(loss), ref_pair_align(fi, ft), 1e-5);
  loss.backward();
  expect_close(to_mat(tfi.grad()), numeric_grad([&] { return ref_pair_align(fi, ft); }, &fi), 1e-5, "d/df_i");
  expect_close(to_mat(tft.grad()), numeric_grad([&] { return ref_pair_align(fi, ft); }, &ft), 1e-5, "d/df_t");
  // Hand case: pairs [1,0]-[0,1] (distance^2 2) and [2,2]-[2,2] (0) -> mean 1.
  EXPECT_NEAR(value(pair_alignment_loss(torch::tensor({1.f, 0.f, 2.f, 2.f}).reshape({2, 2}),
                                        torch::tensor({0.f, 1.f, 2.f, 2.f}).reshape({2, 2}))),
              1.0, 1e-6);
}

// ---------------------------------------------------------------- contrastive

TEST(ContrastiveLoss, MatchesFloat64ReferenceWithGradients) {
  std::mt19937 rng(10);
  for (bool normalize : {true, false}) {
    Mat fi = random_mat(rng, 5, 6), ft = random_mat(rng, 5, 6);
    double log_scale = normalize ? std::log(10.0) : std::log(0.5);
    auto tfi = to_tensor(fi, torch::kFloat32, true), tft = to_tensor(ft, torch::kFloat32, true);
    auto scale = torch::full({}, log_scale, torch::kFloat32).set_requires_grad(true);
    log_scale = scale.item<float>();
    auto loss = contrastive_loss(tfi, tft, scale, ContrastiveOptions{normalize});
    const auto ref = [&] { return ref_contrastive(fi, ft, log_scale, normalize); };
    EXPECT_NEAR(value(loss), ref(), 1e-5 * (1 + ref())) << "normalize=" << normalize;
    loss.backward();
    expect_close(to_mat(tfi.grad()), numeric_grad(ref, &fi), 1e-4, "d/df_i");
    expect_close(to_mat(tft.grad()), numeric_grad(ref, &ft), 1e-4, "d/df_t");
    Mat ls{1, 1, {log_scale}};
    const auto d_scale = numeric_grad([&] { return ref_contrastive(fi, ft, ls.v[0], normalize); }, &ls);
    EXPECT_NEAR(scale.grad().item<double>(), d_scale.v[0], 1e-4 * (1 + std::abs(d_scale.v[0])));
  }
}

TEST(ContrastiveLoss, NormalizedFormIgnoresFeatureLength) {
  std::mt19937 rng(11);
  const Mat fi = random_mat(rng, 4, 5), ft = random_mat(rng, 4, 5);
  const auto scale = torch::full({}, std::log(20.0));
  const double base = value(contrastive_loss(to_tensor(fi), to_tensor(ft), scale, {}));
  EXPECT_NEAR(value(contrastive_loss(to_tensor(fi) * 7.0, to_tensor(ft) * 0.1, scale, {})), base, 1e-5);
  EXPECT_GT(std::abs(value(contrastive_loss(to_tensor(fi) * 7.0, to_tensor(ft), scale, {false})) - base), 1e-3);
  // Perfectly matched, well separated pairs: loss near 0.
  const auto eye = torch::eye(4);
  EXPECT_LT(value(contrastive_loss(eye, eye, torch::full({}, std::log(100.0)), {})), 1e-6);
}

// ---------------------------------------------------------------- refine objective

struct Inputs {
  torch::Tensor fi, ft, gi, gt, zi, zt, scale;
};

Inputs random_inputs(uint64_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.fi = to_tensor(random_mat(rng, 4, 6));
  in.ft = to_tensor(random_mat(rng, 4, 6));
  in.gi = to_tensor(random_mat(rng, 4, 6));
  in.gt = to_tensor(random_mat(rng, 4, 6));
  in.zi = to_tensor(random_mat(rng, 4, 6));
  in.zt = to_tensor(random_mat(rng, 4, 6));
  in.scale = torch::full({}, std::log(1 / 0.07));
  return in;
}

TEST(RefineObjective, EachMethodCombinesTheRightTerms) {
  const Inputs in = random_inputs(12);
  const Mat fi = to_mat(in.fi), ft = to_mat(in.ft), gi = to_mat(in.gi), gt = to_mat(in.gt), zi = to_mat(in.zi),
            zt = to_mat(in.zt);
  const double rafa = ref_rafa(fi, ft, zi, zt);
  const double hycd = ref_hycd(fi, ft, gi, gt, 0.4, 1.0);
  const double self_kd = ref_hycd(fi, ft, gi, gt, 0.0, 1.0);
  const double align = ref_pair_align(fi, ft);
  const double contrastive = ref_contrastive(fi, ft, in.scale.item<float>(), true);

  RefineObjectiveOptions o;
  o.lambda_rafa = 0.3;
  o.lambda_hycd = 2.5;
  o.hycd.alpha = 0.4;
  auto run = [&](RefineMethod m) {
    o.method = m;
    return compute_refine_objective(o, in.fi, in.ft, in.gi, in.gt, in.zi, in.zt, in.scale);
  };
  const double tol = 1e-4;

  auto t = run(RefineMethod::kClipRefine);
  EXPECT_NEAR(value(t.rafa), rafa, tol);
  EXPECT_NEAR(value(t.hycd), hycd, tol);
  EXPECT_NEAR(value(t.total), 0.3 * rafa + 2.5 * hycd, tol);
  EXPECT_FALSE(t.contrastive.defined());
  EXPECT_FALSE(t.align.defined());
  EXPECT_EQ(t.total.scalar_type(), torch::kFloat32);

  t = run(RefineMethod::kContrastive);
  EXPECT_NEAR(value(t.contrastive), contrastive, tol);
  EXPECT_NEAR(value(t.total), contrastive, tol);
  EXPECT_FALSE(t.rafa.defined());
  EXPECT_FALSE(t.hycd.defined());

  t = run(RefineMethod::kSelfKd);  // alpha forced to 0 whatever the options say
  EXPECT_NEAR(value(t.hycd), self_kd, tol);
  EXPECT_NEAR(value(t.total), 2.5 * self_kd, tol);
  EXPECT_GT(std::abs(self_kd - hycd), 1e-3);
  EXPECT_FALSE(t.rafa.defined());

  t = run(RefineMethod::kHycd);
  EXPECT_NEAR(value(t.total), 2.5 * hycd, tol);
  EXPECT_FALSE(t.rafa.defined());

  t = run(RefineMethod::kRafa);
  EXPECT_NEAR(value(t.total), 0.3 * rafa, tol);
  EXPECT_FALSE(t.hycd.defined());

  t = run(RefineMethod::kHycdAlign);
  EXPECT_NEAR(value(t.hycd), hycd, tol);
  EXPECT_NEAR(value(t.align), align, tol);
  EXPECT_NEAR(value(t.total), 2.5 * hycd + 0.3 * align, tol);
  EXPECT_FALSE(t.rafa.defined());
}

TEST(RefineObjective, TotalBackpropagatesToTheStudentOnly) {
  Inputs in = random_inputs(13);
  in.fi.set_requires_grad(true);
  in.gi.set_requires_grad(true);
  RefineObjectiveOptions o;  // clip-refine, lambdas 1
  auto t = compute_refine_objective(o, in.fi, in.ft, in.gi, in.gt, in.zi, in.zt, {});
  t.total.backward();
  // d/df_i of RaFA + HyCD, from the float64 reference.
  Mat fi = to_mat(in.fi);
  const Mat ft = to_mat(in.ft), gi = to_mat(in.gi), gt = to_mat(in.gt), zi = to_mat(in.zi), zt = to_mat(in.zt);
  const auto expected =
      numeric_grad([&] { return ref_rafa(fi, ft, zi, zt) + ref_hycd(fi, ft, gi, gt, 0.5, 1.0); }, &fi);
  expect_close(to_mat(in.fi.grad()), expected, 1e-4, "d total / df_i");
  EXPECT_FALSE(in.gi.grad().defined());
}

TEST(RefineObjective, MethodNamesParseAndUnknownOnesAreNamed) {
  for (auto m : {RefineMethod::kClipRefine, RefineMethod::kContrastive, RefineMethod::kSelfKd, RefineMethod::kHycd,
                 RefineMethod::kRafa, RefineMethod::kHycdAlign}) {
    EXPECT_EQ(parse_refine_method(refine_method_name(m)), m) << refine_method_name(m);
  }
  EXPECT_STREQ(refine_method_name(RefineMethod::kHycdAlign), "hycd-align");
  EXPECT_EQ(parse_refine_method(""), RefineMethod::kClipRefine);
  const Error e = error_of([] { parse_refine_method("clip_refine"); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  const std::string m = e.what();
  EXPECT_NE(m.find("'clip_refine'"), std::string::npos) << m;
  for (const char* choice : {"clip-refine", "contrastive", "self-kd", "hycd", "rafa", "hycd-align"}) {
    EXPECT_NE(m.find(choice), std::string::npos) << m;
  }
}

TEST(RefineObjective, NeedsTeacherAndPriorByMethod) {
  EXPECT_TRUE(needs_teacher(RefineMethod::kClipRefine));
  EXPECT_TRUE(needs_prior(RefineMethod::kClipRefine));
  EXPECT_FALSE(needs_teacher(RefineMethod::kContrastive));
  EXPECT_FALSE(needs_prior(RefineMethod::kContrastive));
  EXPECT_TRUE(needs_teacher(RefineMethod::kSelfKd));
  EXPECT_FALSE(needs_prior(RefineMethod::kSelfKd));
  EXPECT_TRUE(needs_teacher(RefineMethod::kHycd));
  EXPECT_FALSE(needs_prior(RefineMethod::kHycd));
  EXPECT_FALSE(needs_teacher(RefineMethod::kRafa));
  EXPECT_TRUE(needs_prior(RefineMethod::kRafa));
  EXPECT_TRUE(needs_teacher(RefineMethod::kHycdAlign));
  EXPECT_FALSE(needs_prior(RefineMethod::kHycdAlign));

  // Methods that need neither run with those inputs undefined.
  const Inputs in = random_inputs(14);
  RefineObjectiveOptions o;
  o.method = RefineMethod::kRafa;
  EXPECT_NO_THROW(compute_refine_objective(o, in.fi, in.ft, {}, {}, in.zi, in.zt, {}));
  o.method = RefineMethod::kContrastive;
  EXPECT_NO_THROW(compute_refine_objective(o, in.fi, in.ft, {}, {}, {}, {}, in.scale));
  // ... and a missing input that is needed is named.
  o.method = RefineMethod::kHycd;
  const Error t = error_of([&] { compute_refine_objective(o, in.fi, in.ft, {}, {}, {}, {}, {}); });
  EXPECT_EQ(t.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(t.what()).find("g_image"), std::string::npos) << t.what();
  EXPECT_NE(std::string(t.what()).find("'hycd'"), std::string::npos) << t.what();
  o.method = RefineMethod::kClipRefine;
  const Error z = error_of([&] { compute_refine_objective(o, in.fi, in.ft, in.gi, in.gt, {}, {}, {}); });
  EXPECT_NE(std::string(z.what()).find("z_image"), std::string::npos) << z.what();
}

TEST(RefineObjective, ValidateNamesTheBadField) {
  auto message = [](const std::function<void(RefineObjectiveOptions&)>& edit) {
    RefineObjectiveOptions o;
    edit(o);
    const Error e = error_of([&] { o.validate(); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return std::string(e.what());
  };
  EXPECT_NO_THROW(RefineObjectiveOptions{}.validate());
  EXPECT_NE(message([](auto& o) { o.hycd.alpha = 1.5; }).find("alpha"), std::string::npos);
  EXPECT_NE(message([](auto& o) { o.hycd.alpha = -0.1; }).find("alpha"), std::string::npos);
  EXPECT_NE(message([](auto& o) { o.hycd.temperature = 0; }).find("temperature"), std::string::npos);
  EXPECT_NE(message([](auto& o) { o.rafa.sigma = -1; }).find("sigma"), std::string::npos);
  EXPECT_NE(message([](auto& o) { o.lambda_rafa = std::nan(""); }).find("lambda_rafa"), std::string::npos);
  EXPECT_NE(message([](auto& o) { o.lambda_hycd = -1; }).find("lambda_hycd"), std::string::npos);
  EXPECT_NE(message([](auto& o) { o.lambda_hycd = INFINITY; }).find("lambda_hycd"), std::string::npos);
  // Zero prior variance (an ablation of the paper) and zero weights are allowed.
  RefineObjectiveOptions o;
  o.rafa.sigma = 0;
  o.lambda_rafa = 0;
  EXPECT_NO_THROW(o.validate());
}

}  // namespace
}  // namespace refinery
