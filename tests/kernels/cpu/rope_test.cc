#include "kernels/cpu/rope.h"

#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernels/cpu/reference_check.h"

namespace rackserve::kernels::cpu {
namespace {

using reference_check::NormalizedError;
using reference_check::RandomFloats;
using reference_check::SeededRng;
using ::testing::HasSubstr;

// Llama's inverse frequencies, theta^(-2i / head_dim), rounded to float as a checkpoint has them.
std::vector<float> InverseFrequencies(int64_t head_dim, double theta) {
  std::vector<float> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    inv_freq[i] = static_cast<float>(std::pow(theta, -2.0 * i / head_dim));
  }
  return inv_freq;
}

struct Shape {
  int64_t tokens;
  int64_t num_heads;
  int64_t head_dim;
};

class RopeShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(RopeShapeTest, MatchesDoubleReference) {
  const auto [tokens, num_heads, head_dim] = GetParam();
  auto rng = SeededRng();
  const std::vector<float> inv_freq = InverseFrequencies(head_dim, 10000.0);
  std::vector<int64_t> positions(tokens);
  std::uniform_int_distribution<int64_t> position(0, 100000);
  for (int64_t& p : positions) p = position(rng);
  positions[0] = 0;
  const std::vector<float> x0 = RandomFloats(rng, tokens * num_heads * head_dim);

  const int64_t half = head_dim / 2;
  std::vector<double> want(x0.size());
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t base = (t * num_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double theta = static_cast<double>(positions[t]) * inv_freq[i];
        const double a = x0[base + i];
        const double b = x0[base + half + i];
        want[base + i] = a * std::cos(theta) - b * std::sin(theta);
        want[base + half + i] = b * std::cos(theta) + a * std::sin(theta);
      }
    }
  }

  std::vector<float> x = x0;
  ASSERT_TRUE(
      ApplyRope(x.data(), tokens, num_heads, head_dim, positions.data(), inv_freq.data()).ok());
  EXPECT_LT(NormalizedError(x, want), 1e-5);
  // Position 0 is the identity, exactly.
  for (int64_t j = 0; j < num_heads * head_dim; ++j) ASSERT_EQ(x[j], x0[j]) << j;
}

INSTANTIATE_TEST_SUITE_P(Shapes, RopeShapeTest,
                         ::testing::Values(Shape{1, 1, 2}, Shape{3, 1, 64}, Shape{17, 8, 128},
                                           Shape{5, 3, 6}),
                         [](const auto& info) {
                           return absl::StrCat("t", info.param.tokens, "_h", info.param.num_heads,
                                               "_d", info.param.head_dim);
                         });

TEST(RopeTest, NoTokensIsANoOp) {
  const float inv_freq = 1.0f;
  EXPECT_TRUE(ApplyRope(nullptr, 0, 1, 2, nullptr, &inv_freq).ok());
}

TEST(RopeTest, RejectsBadArguments) {
  std::vector<float> x(2 * 2 * 4, 1.0f);
  const std::vector<float> inv_freq = {1.0f, 0.5f};
  const std::vector<int64_t> positions = {3, -2};
  const std::vector<int64_t> good = {3, 4};
  struct Case {
    absl::Status status;
    const char* culprit;
  };
  const Case cases[] = {
      {ApplyRope(x.data(), -1, 2, 4, good.data(), inv_freq.data()),
       "argument tokens must be >= 0, got -1"},
      {ApplyRope(x.data(), 2, 0, 4, good.data(), inv_freq.data()),
       "argument num_heads must be > 0, got 0"},
      {ApplyRope(x.data(), 2, 2, 0, good.data(), inv_freq.data()),
       "argument head_dim must be > 0, got 0"},
      {ApplyRope(x.data(), 2, 2, 3, good.data(), inv_freq.data()),
       "argument head_dim must be even, got 3"},
      {ApplyRope(x.data(), 2, 2, 4, good.data(), nullptr), "argument inv_freq is null"},
      {ApplyRope(nullptr, 2, 2, 4, good.data(), inv_freq.data()), "argument x is null"},
      {ApplyRope(x.data(), 2, 2, 4, nullptr, inv_freq.data()), "argument positions is null"},
      {ApplyRope(x.data(), 2, 2, 4, positions.data(), inv_freq.data()),
       "positions[1] must be >= 0, got -2"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.culprit;
    EXPECT_THAT(c.status.message(), HasSubstr(c.culprit));
  }
  EXPECT_EQ(x, std::vector<float>(x.size(), 1.0f)) << "a rejected call wrote to x";
}

}  // namespace
}  // namespace rackserve::kernels::cpu
