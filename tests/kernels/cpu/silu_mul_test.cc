#include "kernels/cpu/silu_mul.h"

#include <cmath>
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

std::vector<double> ReferenceSiluMul(const std::vector<float>& gate, const std::vector<float>& up) {
  std::vector<double> out(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    out[i] = g / (1.0 + std::exp(-g)) * up[i];
  }
  return out;
}

struct Shape {
  int64_t m;
  int64_t f;
};

class SiluMulShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(SiluMulShapeTest, MatchesDoubleReference) {
  const auto [m, f] = GetParam();
  auto rng = SeededRng();
  std::vector<float> gate = RandomFloats(rng, m * f, -12.0f, 12.0f);
  const std::vector<float> up = RandomFloats(rng, m * f, -12.0f, 12.0f);
  if (f > 1) {
    gate[0] = -100.0f;  // exp(100) overflows float: silu must be ~0, not NaN
    gate[1] = 100.0f;
  }
  const std::vector<double> want = ReferenceSiluMul(gate, up);

  std::vector<float> out = Poisoned(m * f);
  ASSERT_TRUE(SiluMul(gate.data(), up.data(), m, f, out.data()).ok());
  EXPECT_LT(NormalizedError(out, want), 1e-5);
  if (f > 1) {
    EXPECT_LT(std::fabs(out[0]), 1e-30f);
    EXPECT_EQ(out[1], 100.0f * up[1]);
  }

  std::vector<float> into_gate = gate;
  ASSERT_TRUE(SiluMul(into_gate.data(), up.data(), m, f, into_gate.data()).ok());
  EXPECT_EQ(into_gate, out);
  std::vector<float> into_up = up;
  ASSERT_TRUE(SiluMul(gate.data(), into_up.data(), m, f, into_up.data()).ok());
  EXPECT_EQ(into_up, out);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SiluMulShapeTest,
                         ::testing::Values(Shape{1, 1}, Shape{1, 9}, Shape{4, 64}, Shape{3, 1001}),
                         [](const auto& info) {
                           return absl::StrCat("m", info.param.m, "_f", info.param.f);
                         });

TEST(SiluMulTest, NoRowsIsANoOp) { EXPECT_TRUE(SiluMul(nullptr, nullptr, 0, 4, nullptr).ok()); }

TEST(SiluMulTest, RejectsBadArguments) {
  std::vector<float> buffer(64, 1.0f);
  const float* gate = buffer.data();     // [2, 8]
  const float* up = buffer.data() + 16;  // [2, 8]
  struct Case {
    absl::Status status;
    const char* culprit;
  };
  const Case cases[] = {
      {SiluMul(gate, up, -1, 8, buffer.data() + 32), "argument m must be >= 0, got -1"},
      {SiluMul(gate, up, 2, 0, buffer.data() + 32), "argument f must be > 0, got 0"},
      {SiluMul(nullptr, up, 2, 8, buffer.data() + 32), "argument gate is null"},
      {SiluMul(gate, nullptr, 2, 8, buffer.data() + 32), "argument up is null"},
      {SiluMul(gate, up, 2, 8, nullptr), "argument out is null"},
      {SiluMul(gate, up, 2, 8, buffer.data() + 1), "argument out overlaps argument gate"},
      {SiluMul(gate, up, 2, 8, buffer.data() + 24), "argument out overlaps argument up"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.culprit;
    EXPECT_THAT(c.status.message(), HasSubstr(c.culprit));
  }
}

}  // namespace
}  // namespace rackserve::kernels::cpu
