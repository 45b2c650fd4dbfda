#include "kernels/cpu/rms_norm.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernels/cpu/reference_check.h"

namespace rackserve::kernels::cpu {
namespace {

using reference_check::NormalizedError;
using reference_check::Poisoned;
using reference_check::RandomFloats;
using reference_check::SeededRng;
using ::testing::HasSubstr;

constexpr float kEps = 1e-5f;

std::vector<double> ReferenceRmsNorm(const std::vector<double>& x, const std::vector<float>& w,
                                     int64_t m, int64_t hidden, float eps) {
  std::vector<double> out(m * hidden);
  for (int64_t i = 0; i < m; ++i) {
    double sum = 0.0;
    for (int64_t j = 0; j < hidden; ++j) sum += x[i * hidden + j] * x[i * hidden + j];
    const double inv = 1.0 / std::sqrt(sum / hidden + eps);
    for (int64_t j = 0; j < hidden; ++j) out[i * hidden + j] = x[i * hidden + j] * inv * w[j];
  }
  return out;
}

struct Shape {
  int64_t m;
  int64_t hidden;
};

class RmsNormShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(RmsNormShapeTest, MatchesDoubleReference) {
  const auto [m, hidden] = GetParam();
  auto rng = SeededRng();
  const std::vector<float> x = RandomFloats(rng, m * hidden, -4.0f, 4.0f);
  const std::vector<float> w = RandomFloats(rng, hidden, 0.5f, 1.5f);
  const std::vector<double> want =
      ReferenceRmsNorm(std::vector<double>(x.begin(), x.end()), w, m, hidden, kEps);

  std::vector<float> out = Poisoned(m * hidden);
  ASSERT_TRUE(RmsNorm(x.data(), w.data(), m, hidden, kEps, out.data()).ok());
  EXPECT_LT(NormalizedError(out, want), 1e-5);

  std::vector<float> in_place = x;
  ASSERT_TRUE(RmsNorm(in_place.data(), w.data(), m, hidden, kEps, in_place.data()).ok());
  EXPECT_EQ(in_place, out);
}

TEST_P(RmsNormShapeTest, AddRmsNormMatchesDoubleReference) {
  const auto [m, hidden] = GetParam();
  auto rng = SeededRng();
  const std::vector<float> residual0 = RandomFloats(rng, m * hidden, -4.0f, 4.0f);
  const std::vector<float> x = RandomFloats(rng, m * hidden, -4.0f, 4.0f);
  const std::vector<float> w = RandomFloats(rng, hidden, 0.5f, 1.5f);
  std::vector<float> want_residual(m * hidden);
  for (int64_t i = 0; i < m * hidden; ++i) want_residual[i] = residual0[i] + x[i];
  const std::vector<double> want = ReferenceRmsNorm(
      std::vector<double>(want_residual.begin(), want_residual.end()), w, m, hidden, kEps);

  std::vector<float> residual = residual0;
  std::vector<float> out = Poisoned(m * hidden);
  ASSERT_TRUE(AddRmsNorm(residual.data(), x.data(), w.data(), m, hidden, kEps, out.data()).ok());
  EXPECT_EQ(residual, want_residual);
  EXPECT_LT(NormalizedError(out, want), 1e-5);

  std::vector<float> residual_b = residual0;
  std::vector<float> x_then_out = x;
  ASSERT_TRUE(
      AddRmsNorm(residual_b.data(), x_then_out.data(), w.data(), m, hidden, kEps, x_then_out.data())
          .ok());
  EXPECT_EQ(residual_b, want_residual);
  EXPECT_EQ(x_then_out, out);
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormShapeTest,
                         ::testing::Values(Shape{1, 1}, Shape{1, 7}, Shape{5, 64}, Shape{3, 4099},
                                           Shape{2, 8192}),
                         [](const auto& info) {
                           return absl::StrCat("m", info.param.m, "_hidden", info.param.hidden);
                         });

TEST(RmsNormTest, NoRowsIsANoOp) {
  const float w = 1.0f;
  EXPECT_TRUE(RmsNorm(nullptr, &w, 0, 1, kEps, nullptr).ok());
  EXPECT_TRUE(AddRmsNorm(nullptr, nullptr, &w, 0, 1, kEps, nullptr).ok());
}

TEST(RmsNormTest, RejectsBadArguments) {
  std::vector<float> buffer(64, 1.0f);
  const float* w = buffer.data();        // [8]
  float* x = buffer.data() + 8;          // [2, 8]
  float* out = buffer.data() + 24;       // [2, 8]
  float* residual = buffer.data() + 40;  // [2, 8]
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    absl::Status status;
    const char* culprit;
  };
  const Case cases[] = {
      {RmsNorm(x, w, -1, 8, kEps, out), "RmsNorm: argument m must be >= 0, got -1"},
      {RmsNorm(x, w, 2, 0, kEps, out), "argument hidden must be > 0, got 0"},
      {RmsNorm(x, w, 2, 8, -1.0f, out), "argument eps must be finite and >= 0, got -1"},
      {RmsNorm(x, w, 2, 8, nan, out), "argument eps must be finite and >= 0, got nan"},
      {RmsNorm(x, nullptr, 2, 8, kEps, out), "argument weight is null"},
      {RmsNorm(nullptr, w, 2, 8, kEps, out), "argument x is null"},
      {RmsNorm(x, w, 2, 8, kEps, nullptr), "argument out is null"},
      {RmsNorm(x, w, 2, 8, kEps, x + 4), "argument out overlaps argument x"},
      {AddRmsNorm(nullptr, x, w, 2, 8, kEps, out), "AddRmsNorm: argument residual is null"},
      {AddRmsNorm(residual, x, w, 2, 8, kEps, residual + 8),
       "argument out overlaps argument residual"},
      {AddRmsNorm(residual, x, w, 2, 0, kEps, out), "AddRmsNorm: argument hidden must be > 0"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.culprit;
    EXPECT_THAT(c.status.message(), HasSubstr(c.culprit));
  }
}

}  // namespace
}  // namespace rackserve::kernels::cpu
