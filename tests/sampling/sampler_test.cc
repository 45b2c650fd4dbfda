#include "runtime/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/sampling/counter_rng.h"

namespace rackserve::sampling {
namespace {

constexpr int kDraws = 20000;

std::vector<float> RandomLogits(std::mt19937_64& rng, int vocab, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (float& logit : logits) logit = dist(rng);
  return logits;
}

// softmax(logits / temperature) in float64.
std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = std::exp((logits[i] - max) / temperature);
    total += p[i];
  }
  for (double& x : p) x /= total;
  return p;
}

// Token counts over steps [0, kDraws).
std::vector<int64_t> Histogram(const std::vector<float>& logits, const SamplingParams& params) {
  std::vector<int64_t> counts(logits.size(), 0);
  for (int step = 0; step < kDraws; ++step) ++counts[SampleToken(logits, params, step)];
  return counts;
}

// Pearson's chi-square of counts against probabilities p; bins expecting fewer than 5 draws
// are pooled. Sets *dof to the degrees of freedom.
double ChiSquare(const std::vector<int64_t>& counts, const std::vector<double>& p, int* dof) {
  double chi2 = 0.0;
  double pooled_expected = 0.0;
  double pooled_observed = 0.0;
  int bins = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = p[i] * kDraws;
    if (expected < 5.0) {
      pooled_expected += expected;
      pooled_observed += static_cast<double>(counts[i]);
      continue;
    }
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++bins;
  }
  if (pooled_expected > 0.0) {
    if (pooled_expected >= 1.0) {
      chi2 += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) /
              pooled_expected;
      ++bins;
    } else {
      EXPECT_LE(pooled_observed, 10.0);  // near-impossible tokens stay rare
    }
  }
  *dof = bins - 1;
  return chi2;
}

// Mean + 6 standard deviations of the chi-square distribution: a deterministic test that fails
// only for a wrong distribution.
double ChiSquareBound(int dof) { return dof + 6.0 * std::sqrt(2.0 * dof); }

// Ids of the k largest logits.
std::set<int32_t> TopK(const std::vector<float>& logits, int k) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  return std::set<int32_t>(ids.begin(), ids.begin() + k);
}

TEST(CounterRngTest, UniformInUnitIntervalAndWellSpread) {
  double sum = 0.0;
  int low = 0;
  for (uint64_t i = 0; i < 100000; ++i) {
    const double u = CounterUniform(42, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    low += u < 0.1;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
  EXPECT_NEAR(low / 100000.0, 0.1, 0.005);
  EXPECT_NE(CounterHash(1, 0), CounterHash(0, 1));
  EXPECT_EQ(CounterHash(7, 9), CounterHash(7, 9));
}

TEST(SampleTokenTest, GreedyIsArgmax) {
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    const std::vector<float> logits = RandomLogits(rng, 1 + trial, 10.0f);
    const int32_t argmax =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(SampleToken(logits, {}, trial), argmax);
  }
}

TEST(SampleTokenTest, GreedyTiesGoToTheLowestId) {
  const std::vector<float> logits = {0.0f, 3.0f, -1.0f, 3.0f, 3.0f};
  EXPECT_EQ(SampleToken(logits, {}, 0), 1);
  const std::vector<float> with_nan = {std::numeric_limits<float>::quiet_NaN(), 1.0f, 1.0f};
  EXPECT_EQ(SampleToken(with_nan, {}, 0), 1);
}

TEST(SampleTokenTest, TopKOneIsGreedy) {
  std::mt19937_64 rng(2);
  for (int trial = 0; trial < 200; ++trial) {
    const std::vector<float> logits = RandomLogits(rng, 64, 2.0f);
    const SamplingParams params{.temperature = 1.5f, .top_k = 1, .seed = 99};
    EXPECT_EQ(SampleToken(logits, params, trial), SampleToken(logits, {}, trial));
  }
}

TEST(SampleTokenTest, TopKNeverLeavesTheKLargest) {
  std::mt19937_64 rng(3);
  for (int k : {2, 5, 17}) {
    const std::vector<float> logits = RandomLogits(rng, 100, 1.0f);
    const std::set<int32_t> allowed = TopK(logits, k);
    const SamplingParams params{.temperature = 5.0f, .top_k = k, .seed = 11};
    std::set<int32_t> seen;
    for (int step = 0; step < 3000; ++step) {
      const int32_t token = SampleToken(logits, params, step);
      ASSERT_TRUE(allowed.contains(token)) << "k=" << k << " token=" << token;
      seen.insert(token);
    }
    EXPECT_EQ(seen, allowed);  // a flat distribution reaches every one of the k
  }
}

TEST(SampleTokenTest, TopPNeverLeavesTheNucleus) {
  std::mt19937_64 rng(4);
  for (float top_p : {0.3f, 0.6f, 0.9f}) {
    const std::vector<float> logits = RandomLogits(rng, 60, 3.0f);
    const std::vector<double> p = Softmax(logits, 1.0);
    std::vector<int32_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    std::set<int32_t> nucleus;
    double mass = 0.0;
    for (int32_t id : order) {
      if (mass >= top_p) break;
      nucleus.insert(id);
      mass += p[id];
    }
    const SamplingParams params{.temperature = 1.0f, .top_p = top_p, .seed = 5};
    std::vector<int64_t> counts(logits.size(), 0);
    for (int step = 0; step < kDraws; ++step) {
      const int32_t token = SampleToken(logits, params, step);
      ASSERT_TRUE(nucleus.contains(token)) << "top_p=" << top_p << " token=" << token;
      ++counts[token];
    }
    // Inside the nucleus the draws follow the renormalized softmax.
    std::vector<double> renormalized(p.size(), 0.0);
    for (int32_t id : nucleus) renormalized[id] = p[id] / mass;
    int dof = 0;
    const double chi2 = ChiSquare(counts, renormalized, &dof);
    EXPECT_LT(chi2, ChiSquareBound(dof)) << "top_p=" << top_p << " dof=" << dof;
  }
}

TEST(SampleTokenTest, TopKAndTopPCombine) {
  // Probabilities ~ {0.5, 0.25, 0.125, ...}: top_k = 3 keeps 3 tokens, renormalized mass of the
  // first is 4/7, so top_p = 0.5 keeps only it.
  std::vector<float> logits(10);
  for (int i = 0; i < 10; ++i) logits[i] = -static_cast<float>(i) * std::log(2.0f);
  const SamplingParams params{.temperature = 1.0f, .top_k = 3, .top_p = 0.5f, .seed = 8};
  for (int step = 0; step < 500; ++step) EXPECT_EQ(SampleToken(logits, params, step), 0);
}

TEST(SampleTokenTest, SameSeedAndStepGiveTheSameToken) {
  std::mt19937_64 rng(5);
  const std::vector<float> logits = RandomLogits(rng, 1000, 1.0f);
  const std::vector<float> copy = logits;
  const SamplingParams params{.temperature = 1.0f, .top_k = 50, .top_p = 0.9f, .seed = 1234};
  for (int step = 0; step < 200; ++step) {
    EXPECT_EQ(SampleToken(logits, params, step), SampleToken(copy, params, step));
  }
}

TEST(SampleTokenTest, DifferentSeedsDiffer) {
  const std::vector<float> flat(1000, 0.0f);
  SamplingParams a{.temperature = 1.0f, .seed = 1};
  SamplingParams b{.temperature = 1.0f, .seed = 2};
  int differ = 0;
  int repeats = 0;
  for (int step = 0; step < 500; ++step) {
    differ += SampleToken(flat, a, step) != SampleToken(flat, b, step);
    repeats += SampleToken(flat, a, step) == SampleToken(flat, a, step + 1);
  }
  EXPECT_GT(differ, 490);  // equal with probability 1/1000 per draw
  EXPECT_LT(repeats, 10);  // consecutive steps draw fresh numbers
}

TEST(SampleTokenTest, TemperatureOneMatchesSoftmax) {
  std::mt19937_64 rng(6);
  const std::vector<float> logits = RandomLogits(rng, 12, 2.0f);
  const std::vector<double> p = Softmax(logits, 1.0);
  const std::vector<int64_t> counts = Histogram(logits, {.temperature = 1.0f, .seed = 77});
  int dof = 0;
  const double chi2 = ChiSquare(counts, p, &dof);
  EXPECT_LT(chi2, ChiSquareBound(dof)) << "dof=" << dof;
  double max_diff = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(counts[i]) / kDraws - p[i]));
  }
  EXPECT_LT(max_diff, 0.02);
}

TEST(SampleTokenTest, TemperatureScalesTheDistribution) {
  std::mt19937_64 rng(7);
  const std::vector<float> logits = RandomLogits(rng, 10, 1.5f);
  for (float temperature : {0.5f, 2.0f}) {
    const std::vector<int64_t> counts = Histogram(logits, {.temperature = temperature, .seed = 3});
    int dof = 0;
    const double chi2 = ChiSquare(counts, Softmax(logits, temperature), &dof);
    EXPECT_LT(chi2, ChiSquareBound(dof)) << "T=" << temperature;
    // The test has power: the same draws are far from the temperature-1 distribution.
    int dof_wrong = 0;
    EXPECT_GT(ChiSquare(counts, Softmax(logits, 1.0), &dof_wrong), 10 * ChiSquareBound(dof_wrong))
        << "T=" << temperature;
  }
  // A tiny temperature is greedy in effect.
  const SamplingParams cold{.temperature = 1e-4f, .seed = 1};
  for (int step = 0; step < 200; ++step) {
    EXPECT_EQ(SampleToken(logits, cold, step), SampleToken(logits, {}, step));
  }
}

TEST(SampleTokenTest, MaskedAndNanLogitsAreNeverSampled) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {-inf, 0.0f, nan, 0.5f, -inf};
  for (const SamplingParams& params :
       {SamplingParams{.temperature = 1.0f}, SamplingParams{.temperature = 1.0f, .top_k = 3},
        SamplingParams{.temperature = 1.0f, .top_p = 0.99f}}) {
    for (int step = 0; step < 1000; ++step) {
      const int32_t token = SampleToken(logits, params, step);
      EXPECT_TRUE(token == 1 || token == 3) << token;
    }
  }
  // +inf dominates everything.
  const std::vector<float> spike = {1.0f, inf, 2.0f};
  EXPECT_EQ(SampleToken(spike, {.temperature = 1.0f}, 0), 1);
}

}  // namespace
}  // namespace rackserve::sampling
