#include "kernels/cpu/dense_linear.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/base/thread_pool.h"
#include "tests/kernels/cpu/reference_check.h"

namespace rackserve::kernels::cpu {
namespace {

using reference_check::NormalizedError;
using reference_check::Poisoned;
using reference_check::RandomFloats;
using reference_check::SeededRng;
using ::testing::HasSubstr;

struct Shape {
  int64_t m;
  int64_t n;
  int64_t k;
};

class DenseLinearShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(DenseLinearShapeTest, MatchesDoubleReference) {
  const Shape shape = GetParam();
  auto rng = SeededRng();
  const std::vector<float> w = RandomFloats(rng, shape.n * shape.k);
  const std::vector<float> x = RandomFloats(rng, shape.m * shape.k);
  std::vector<double> want(shape.m * shape.n);
  for (int64_t i = 0; i < shape.m; ++i) {
    for (int64_t j = 0; j < shape.n; ++j) {
      double acc = 0.0;
      for (int64_t c = 0; c < shape.k; ++c) {
        acc += static_cast<double>(x[i * shape.k + c]) * w[j * shape.k + c];
      }
      want[i * shape.n + j] = acc;
    }
  }

  std::vector<float> y = Poisoned(shape.m * shape.n);
  ASSERT_TRUE(DenseLinear(w.data(), shape.n, shape.k, x.data(), shape.m, y.data(), nullptr).ok());
  EXPECT_LT(NormalizedError(y, want), 1e-5);

  base::ThreadPool pool(3);
  std::vector<float> y_pool = Poisoned(shape.m * shape.n);
  ASSERT_TRUE(
      DenseLinear(w.data(), shape.n, shape.k, x.data(), shape.m, y_pool.data(), &pool).ok());
  EXPECT_EQ(std::memcmp(y.data(), y_pool.data(), y.size() * sizeof(float)), 0)
      << "the pool changed the result";
}

INSTANTIATE_TEST_SUITE_P(Shapes, DenseLinearShapeTest,
                         ::testing::Values(Shape{1, 1, 1}, Shape{1, 7, 13}, Shape{2, 5, 8},
                                           Shape{3, 13, 517}, Shape{1, 200, 1030}, Shape{64, 9, 64},
                                           Shape{131, 6, 40}),
                         [](const auto& info) {
                           return absl::StrCat("m", info.param.m, "_n", info.param.n, "_k",
                                               info.param.k);
                         });

TEST(DenseLinearTest, NoRowsIsANoOp) {
  const std::vector<float> w(12, 1.0f);
  EXPECT_TRUE(DenseLinear(w.data(), 3, 4, nullptr, 0, nullptr, nullptr).ok());
}

TEST(DenseLinearTest, RejectsBadArguments) {
  std::vector<float> buffer(64);
  const float* w = buffer.data();       // [2, 8]
  const float* x = buffer.data() + 16;  // [2, 8]
  float* y = buffer.data() + 32;        // [2, 2]
  struct Case {
    absl::Status status;
    const char* culprit;
  };
  const Case cases[] = {
      {DenseLinear(w, 0, 8, x, 2, y, nullptr), "argument n must be > 0, got 0"},
      {DenseLinear(w, 2, -3, x, 2, y, nullptr), "argument k must be > 0, got -3"},
      {DenseLinear(w, 2, 8, x, -1, y, nullptr), "argument m must be >= 0, got -1"},
      {DenseLinear(nullptr, 2, 8, x, 2, y, nullptr), "argument w is null"},
      {DenseLinear(w, 2, 8, nullptr, 2, y, nullptr), "argument x is null"},
      {DenseLinear(w, 2, 8, x, 2, nullptr, nullptr), "argument y is null"},
      {DenseLinear(w, 2, 8, x, 2, buffer.data() + 30, nullptr), "y overlaps argument x"},
      {DenseLinear(w, 2, 8, x, 2, buffer.data() + 14, nullptr), "y overlaps argument x"},
      {DenseLinear(w, 2, 8, buffer.data() + 40, 2, buffer.data() + 12, nullptr),
       "y overlaps argument w"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.culprit;
    EXPECT_THAT(c.status.message(), HasSubstr(c.culprit));
  }
}

}  // namespace
}  // namespace rackserve::kernels::cpu
