#include "runtime/model/rope_frequencies.h"

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rackserve::model {
namespace {

ModelConfig Config(int64_t head_dim, double theta) {
  ModelConfig c;
  c.vocab_size = 1000;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = head_dim;
  c.hidden_size = 4 * head_dim;
  c.intermediate_size = 8 * head_dim;
  c.num_hidden_layers = 1;
  c.max_position_embeddings = 131072;
  c.rope_theta = theta;
  c.eos_token_ids = {2};
  return c;
}

ModelConfig Llama3Config(int64_t head_dim, double theta, double factor, double low, double high,
                         int64_t original) {
  ModelConfig c = Config(head_dim, theta);
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = factor;
  c.rope_scaling.low_freq_factor = low;
  c.rope_scaling.high_freq_factor = high;
  c.rope_scaling.original_max_position_embeddings = original;
  return c;
}

// Reference written independently of the implementation: exponent form, and the llama3 bands
// expressed as thresholds on the frequency instead of the wavelength.
std::vector<double> Reference(const ModelConfig& c) {
  std::vector<double> freq;
  const RopeScaling& s = c.rope_scaling;
  const double original = static_cast<double>(s.original_max_position_embeddings);
  for (int64_t i = 0; 2 * i < c.head_dim; ++i) {
    double f = std::exp(-std::log(c.rope_theta) * static_cast<double>(2 * i) /
                        static_cast<double>(c.head_dim));
    if (s.type == RopeScaling::Type::kLlama3) {
      // wavelength 2*pi/f < original/high  <=>  f > 2*pi*high/original
      const double high_freq_threshold = 2.0 * std::numbers::pi * s.high_freq_factor / original;
      const double low_freq_threshold = 2.0 * std::numbers::pi * s.low_freq_factor / original;
      if (f < low_freq_threshold) {
        f /= s.factor;
      } else if (f <= high_freq_threshold) {
        const double smooth = (original * f / (2.0 * std::numbers::pi) - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f *= (1.0 - smooth) / s.factor + smooth;
      }
    }
    freq.push_back(f);
  }
  return freq;
}

double NormalizedError(const std::vector<double>& y, const std::vector<double>& ref) {
  double diff = 0.0;
  double norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (y[i] - ref[i]) * (y[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff / norm);
}

TEST(RopeFrequenciesTest, PlainMatchesTheDefinition) {
  const ModelConfig c = Config(128, 10000.0);
  const std::vector<double> f = RopeInvFrequencies(c);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_EQ(f[0], 1.0);
  EXPECT_NEAR(f[1], std::pow(10000.0, -2.0 / 128.0), 1e-15);
  EXPECT_NEAR(f[63], std::pow(10000.0, -126.0 / 128.0), 1e-18);
  EXPECT_LT(NormalizedError(f, Reference(c)), 1e-14);
  for (size_t i = 1; i < f.size(); ++i) EXPECT_LT(f[i], f[i - 1]);
}

// Llama 3.1 8B: head_dim 128, theta 500000, factor 8, low 1, high 4, original 8192. By hand:
// wavelength 2*pi*500000^(i/64) is below 8192/4 = 2048 for i <= 28 and above 8192 for i >= 35.
TEST(RopeFrequenciesTest, Llama31BandsMatchTheHandComputedSplit) {
  const ModelConfig c = Llama3Config(128, 500000.0, 8.0, 1.0, 4.0, 8192);
  const std::vector<double> plain = RopeInvFrequencies(Config(128, 500000.0));
  const std::vector<double> f = RopeInvFrequencies(c);
  ASSERT_EQ(f.size(), 64u);
  for (size_t i = 0; i <= 28; ++i) EXPECT_EQ(f[i], plain[i]) << i;
  for (size_t i = 29; i <= 34; ++i) {
    EXPECT_LT(f[i], plain[i]) << i;
    EXPECT_GT(f[i], plain[i] / 8.0) << i;
  }
  for (size_t i = 35; i < 64; ++i) EXPECT_DOUBLE_EQ(f[i], plain[i] / 8.0) << i;
  for (size_t i = 1; i < f.size(); ++i) EXPECT_LT(f[i], f[i - 1]);
  EXPECT_LT(NormalizedError(f, Reference(c)), 1e-14);
}

TEST(RopeFrequenciesTest, RandomConfigsMatchTheReference) {
  const unsigned seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> half_dim(1, 128);
  std::uniform_real_distribution<double> log_theta(std::log(100.0), std::log(1e7));
  std::uniform_real_distribution<double> factor(1.0, 64.0);
  std::uniform_real_distribution<double> low(0.25, 2.0);
  std::uniform_real_distribution<double> gap(0.5, 8.0);
  std::uniform_int_distribution<int64_t> original(256, 65536);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t head_dim = 2 * half_dim(rng);
    const double theta = std::exp(log_theta(rng));
    const double low_factor = low(rng);
    ModelConfig c = trial % 2 == 0 ? Config(head_dim, theta)
                                   : Llama3Config(head_dim, theta, factor(rng), low_factor,
                                                  low_factor + gap(rng), original(rng));
    ASSERT_TRUE(c.Validate().ok()) << c.Validate();
    const std::vector<double> f = RopeInvFrequencies(c);
    ASSERT_EQ(f.size(), static_cast<size_t>(head_dim / 2));
    EXPECT_LT(NormalizedError(f, Reference(c)), 1e-13) << "trial " << trial;
  }
}

TEST(RopeFrequenciesDeathTest, UnvalidatedConfigAborts) {
  EXPECT_DEATH(RopeInvFrequencies(Config(0, 10000.0)), "head_dim");
}

}  // namespace
}  // namespace rackserve::model
