#include "kernels/cpu/fp4_linear.h"

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/base/thread_pool.h"
#include "runtime/numerics/fp4_matrix.h"
#include "runtime/numerics/minifloat.h"
#include "tests/kernels/cpu/reference_check.h"

namespace rackserve::kernels::cpu {
namespace {

using numerics::Fp4Format;
using numerics::Fp4Matrix;
using reference_check::NormalizedError;
using reference_check::Poisoned;
using reference_check::RandomFloats;
using reference_check::SeededRng;
using ::testing::HasSubstr;

// A random but valid matrix: random packed bytes (every E2M1 code), random non-NaN scales.
Fp4Matrix RandomFp4Matrix(std::mt19937_64& rng, Fp4Format format, int64_t rows, int64_t cols) {
  const int block = numerics::Fp4BlockSize(format);
  Fp4Matrix w;
  w.format = format;
  w.rows = rows;
  w.cols = cols;
  w.packed.resize(rows * cols / 2);
  w.scales.resize(rows * cols / block);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : w.packed) b = static_cast<uint8_t>(byte(rng));
  if (format == Fp4Format::kNvfp4) {
    // Any E4M3 byte but the two NaNs: zero, subnormal, negative and up to +-448.
    for (uint8_t& s : w.scales) {
      do {
        s = static_cast<uint8_t>(byte(rng));
      } while ((s & 0x7F) == 0x7F);
    }
    w.tensor_scale = std::uniform_real_distribution<float>(0.25f, 4.0f)(rng);
  } else {
    std::uniform_int_distribution<int> exponent(127 - 10, 127 + 10);
    for (uint8_t& s : w.scales) s = static_cast<uint8_t>(exponent(rng));
    w.tensor_scale = 1.0f;
  }
  return w;
}

// W in double, decoded with the scalar decoders of runtime/numerics/minifloat.h.
std::vector<double> ReferenceDequantize(const Fp4Matrix& w) {
  const int block = numerics::Fp4BlockSize(w.format);
  std::vector<double> out(w.rows * w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) {
      const uint8_t byte = w.packed[(r * w.cols + c) / 2];
      const uint8_t code = (c % 2 == 0) ? (byte & 0xF) : (byte >> 4);
      const uint8_t scale_byte = w.scales[r * (w.cols / block) + c / block];
      const double scale = w.format == Fp4Format::kNvfp4 ? numerics::E4m3ToFloat(scale_byte)
                                                         : numerics::E8m0ToFloat(scale_byte);
      out[r * w.cols + c] = numerics::E2m1ToFloat(code) * scale * w.tensor_scale;
    }
  }
  return out;
}

// y = x * W^T in double.
std::vector<double> ReferenceLinear(const std::vector<double>& w, int64_t n, int64_t k,
                                    const std::vector<float>& x, int64_t m) {
  std::vector<double> y(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t c = 0; c < k; ++c) acc += static_cast<double>(x[i * k + c]) * w[j * k + c];
      y[i * n + j] = acc;
    }
  }
  return y;
}

struct Shape {
  int64_t m;
  int64_t n;
  int64_t k_blocks;  // K in blocks of the format (16 or 32 elements)
};

class Fp4LinearShapeTest : public ::testing::TestWithParam<std::tuple<Fp4Format, Shape>> {};

TEST_P(Fp4LinearShapeTest, MatchesDoubleReference) {
  const auto [format, shape] = GetParam();
  const int64_t k = shape.k_blocks * numerics::Fp4BlockSize(format);
  auto rng = SeededRng();
  const Fp4Matrix w = RandomFp4Matrix(rng, format, shape.n, k);
  const std::vector<float> x = RandomFloats(rng, shape.m * k);
  const std::vector<double> want = ReferenceLinear(ReferenceDequantize(w), shape.n, k, x, shape.m);

  std::vector<float> y = Poisoned(shape.m * shape.n);
  ASSERT_TRUE(Fp4Linear(w, x.data(), shape.m, y.data(), nullptr).ok());
  EXPECT_LT(NormalizedError(y, want), 1e-5);

  base::ThreadPool pool(3);
  std::vector<float> y_pool = Poisoned(shape.m * shape.n);
  ASSERT_TRUE(Fp4Linear(w, x.data(), shape.m, y_pool.data(), &pool).ok());
  EXPECT_EQ(std::memcmp(y.data(), y_pool.data(), y.size() * sizeof(float)), 0)
      << "the pool changed the result";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Fp4LinearShapeTest,
    ::testing::Combine(::testing::Values(Fp4Format::kNvfp4, Fp4Format::kMxfp4),
                       ::testing::Values(Shape{1, 1, 1},      // K = one block
                                         Shape{1, 7, 1},      // odd N below one panel
                                         Shape{2, 13, 3},     // odd N, ragged last panel
                                         Shape{1, 64, 32},    // decode, K = one decoded panel
                                         Shape{3, 9, 33},     // K spans several panels
                                         Shape{64, 33, 16},   // a full row block
                                         Shape{131, 6, 4})),  // row blocks + odd remainder
    [](const auto& info) {
      const Shape s = std::get<1>(info.param);
      return absl::StrCat(std::string(numerics::Fp4FormatName(std::get<0>(info.param))), "_m", s.m,
                          "_n", s.n, "_kb", s.k_blocks);
    });

TEST(Fp4LinearTest, AgreesWithQuantizeFp4AndDequantizeFp4) {
  auto rng = SeededRng();
  for (Fp4Format format : {Fp4Format::kNvfp4, Fp4Format::kMxfp4}) {
    const int64_t m = 5, n = 24, k = 256;
    const std::vector<float> dense = RandomFloats(rng, n * k, -3.0f, 3.0f);
    auto w = numerics::QuantizeFp4(dense, n, k, format, "dense");
    ASSERT_TRUE(w.ok()) << w.status();
    std::vector<float> dequantized(n * k);
    numerics::DequantizeFp4(*w, dequantized);
    const std::vector<float> x = RandomFloats(rng, m * k);
    const std::vector<double> want =
        ReferenceLinear(std::vector<double>(dequantized.begin(), dequantized.end()), n, k, x, m);
    std::vector<float> y = Poisoned(m * n);
    ASSERT_TRUE(Fp4Linear(*w, x.data(), m, y.data(), nullptr).ok());
    EXPECT_LT(NormalizedError(y, want), 1e-5) << numerics::Fp4FormatName(format);
  }
}

TEST(Fp4LinearTest, NoRowsIsANoOp) {
  auto rng = SeededRng();
  const Fp4Matrix w = RandomFp4Matrix(rng, Fp4Format::kNvfp4, 4, 16);
  EXPECT_TRUE(Fp4Linear(w, nullptr, 0, nullptr, nullptr).ok());
}

TEST(Fp4LinearTest, RejectsMalformedWeight) {
  auto rng = SeededRng();
  const std::vector<float> x(32, 1.0f);
  std::vector<float> y(8);

  Fp4Matrix short_packed = RandomFp4Matrix(rng, Fp4Format::kNvfp4, 4, 32);
  short_packed.packed.pop_back();
  absl::Status s = Fp4Linear(short_packed, x.data(), 1, y.data(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("weight w"));
  EXPECT_THAT(s.message(), HasSubstr("packed bytes"));

  Fp4Matrix short_scales = RandomFp4Matrix(rng, Fp4Format::kMxfp4, 4, 32);
  short_scales.scales.pop_back();
  s = Fp4Linear(short_scales, x.data(), 1, y.data(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("scale bytes"));

  Fp4Matrix ragged = RandomFp4Matrix(rng, Fp4Format::kNvfp4, 4, 32);
  ragged.format = Fp4Format::kMxfp4;  // 32 columns are fine, but the scale count is not
  s = Fp4Linear(ragged, x.data(), 1, y.data(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);

  Fp4Matrix bad_cols = RandomFp4Matrix(rng, Fp4Format::kNvfp4, 2, 16);
  bad_cols.cols = 24;
  s = Fp4Linear(bad_cols, x.data(), 1, y.data(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("multiple of 16"));

  Fp4Matrix bad_scale = RandomFp4Matrix(rng, Fp4Format::kNvfp4, 4, 32);
  bad_scale.tensor_scale = 0.0f;
  s = Fp4Linear(bad_scale, x.data(), 1, y.data(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tensor_scale"));
}

TEST(Fp4LinearTest, RejectsBadArguments) {
  auto rng = SeededRng();
  const Fp4Matrix w = RandomFp4Matrix(rng, Fp4Format::kNvfp4, 4, 16);
  std::vector<float> buffer(64);
  const float* x = buffer.data();
  float* y = buffer.data() + 32;

  absl::Status s = Fp4Linear(w, x, -1, y, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("argument m"));

  s = Fp4Linear(w, nullptr, 1, y, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("argument x is null"));

  s = Fp4Linear(w, x, 1, nullptr, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("argument y is null"));

  // x [2, 16] = buffer[0:32], y [2, 4] = buffer[28:36] overlaps its tail.
  s = Fp4Linear(w, x, 2, buffer.data() + 28, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("y overlaps argument x"));
}

}  // namespace
}  // namespace rackserve::kernels::cpu
