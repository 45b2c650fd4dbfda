// Tests NVFP4 / MXFP4 quantization: exact round trips of values on the FP4 grid, hand-computed
// blocks, per-element and normalized error bounds on fresh random matrices, and the errors
// QuantizeFp4 and ValidateFp4Matrix report.
#include "runtime/numerics/fp4_matrix.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "runtime/numerics/minifloat.h"

namespace rackserve::numerics {
namespace {

using ::testing::HasSubstr;

uint32_t TestSeed() {
  const uint32_t seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  return seed;
}

std::vector<float> Dequantize(const Fp4Matrix& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  DequantizeFp4(m, out);
  return out;
}

// ||got - ref|| / ||ref|| in double.
double NormalizedError(const std::vector<float>& ref, const std::vector<float>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

std::vector<float> Gaussian(int64_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// E2M1 code of element (r, c).
uint8_t CodeAt(const Fp4Matrix& m, int64_t r, int64_t c) {
  const uint8_t byte = m.packed[static_cast<size_t>((r * m.cols + c) / 2)];
  return c % 2 == 0 ? (byte & 0xF) : (byte >> 4);
}

// Fills `block` consecutive values with random E2M1 codes times `scale`, one of them +-6, so
// the block's amax is exactly 6 * scale. Returns the codes.
std::vector<uint8_t> FillGridBlock(float scale, int block, std::mt19937& rng, float* out) {
  std::uniform_int_distribution<int> code_dist(0, 15);
  std::vector<uint8_t> codes(static_cast<size_t>(block));
  for (int i = 0; i < block; ++i) {
    codes[i] = static_cast<uint8_t>(code_dist(rng));
    if (codes[i] == 8) codes[i] = 0;  // -0 encodes as +0
  }
  codes[std::uniform_int_distribution<int>(0, block - 1)(rng)] = rng() % 2 ? 0x7 : 0xF;
  for (int i = 0; i < block; ++i) out[i] = E2m1ToFloat(codes[i]) * scale;
  return codes;
}

TEST(Fp4FormatTest, NamesBlockSizesAndParsing) {
  EXPECT_EQ(Fp4BlockSize(Fp4Format::kNvfp4), 16);
  EXPECT_EQ(Fp4BlockSize(Fp4Format::kMxfp4), 32);
  EXPECT_EQ(Fp4FormatName(Fp4Format::kNvfp4), "nvfp4");
  EXPECT_EQ(Fp4FormatName(Fp4Format::kMxfp4), "mxfp4");
  EXPECT_EQ(ParseFp4Format("NVFP4").value(), Fp4Format::kNvfp4);
  EXPECT_EQ(ParseFp4Format("mxFP4").value(), Fp4Format::kMxfp4);
  const absl::StatusOr<Fp4Format> bad = ParseFp4Format("fp8_e4m3");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("fp8_e4m3"));
}

TEST(Fp4QuantizeTest, Nvfp4GridValuesRoundTripExactly) {
  std::mt19937 rng(TestSeed());
  const int64_t rows = 5, cols = 64, block = 16;
  // tensor_scale = amax / 2688 = 2^-10 exactly when the largest block scale is 448 (0x7E).
  const float tensor_scale = std::ldexp(1.0f, -10);
  std::vector<float> w(rows * cols);
  std::vector<uint8_t> scale_codes, codes;
  for (int64_t b = 0; b < rows * cols / block; ++b) {
    const uint8_t s = b == 3 ? 0x7E : static_cast<uint8_t>(1 + rng() % 0x7E);  // 0x01..0x7E
    scale_codes.push_back(s);
    const std::vector<uint8_t> c =
        FillGridBlock(E4m3ToFloat(s) * tensor_scale, block, rng, &w[b * block]);
    codes.insert(codes.end(), c.begin(), c.end());
  }
  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, rows, cols, Fp4Format::kNvfp4, "w");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->tensor_scale, tensor_scale);
  EXPECT_EQ(m->scales, scale_codes);
  for (int64_t i = 0; i < rows * cols; ++i) {
    ASSERT_EQ(CodeAt(*m, i / cols, i % cols), codes[i]) << i;
  }
  EXPECT_EQ(Dequantize(*m), w);
}

TEST(Fp4QuantizeTest, Mxfp4GridValuesRoundTripExactly) {
  std::mt19937 rng(TestSeed());
  const int64_t rows = 3, cols = 96, block = 32;
  std::vector<float> w(rows * cols);
  std::vector<uint8_t> scale_codes, codes;
  for (int64_t b = 0; b < rows * cols / block; ++b) {
    const int exp = static_cast<int>(rng() % 41) - 20;  // block amax 6 * 2^exp: scale 2^exp
    scale_codes.push_back(static_cast<uint8_t>(exp + 127));
    const std::vector<uint8_t> c = FillGridBlock(std::ldexp(1.0f, exp), block, rng, &w[b * block]);
    codes.insert(codes.end(), c.begin(), c.end());
  }
  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, rows, cols, Fp4Format::kMxfp4, "w");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->tensor_scale, 1.0f);
  EXPECT_EQ(m->scales, scale_codes);
  for (int64_t i = 0; i < rows * cols; ++i) {
    ASSERT_EQ(CodeAt(*m, i / cols, i % cols), codes[i]) << i;
  }
  EXPECT_EQ(Dequantize(*m), w);
}

TEST(Fp4QuantizeTest, Nvfp4HandComputedBlocks) {
  // 3 rows x 32 cols = 2 blocks per row. Global amax 2688 makes tensor_scale exactly 1.
  std::vector<float> w(3 * 32, 0.0f);
  // Row 0, block 0: amax 2688 -> scale 2688 / 6 = 448 (0x7E); elements w / 448.
  const float b00[] = {2688, 1344, -896, 224, 100, 300};  // 6, 3, -2, 0.5, 0.22->0, 0.67->0.5
  // Row 0, block 1: amax 12 -> scale 2 (0x40); 6, 2.5->2 (tie), -3.5->-4 (tie), 0.5, 0.2->0.
  const float b01[] = {12, 5, -7, 1, 0.4f};
  // Row 1, block 0: amax 3 -> scale 0.5 (0x30); 6, -3, 1.5.
  const float b10[] = {3, -1.5f, 0.75f};
  // Row 1, block 1: amax 0.01 -> 0.01 / 6 rounds to the subnormal 2^-9 (0x01);
  // 0.01 / 2^-9 = 5.12 -> 6, -0.004 / 2^-9 = -2.048 -> -2. Row 2 is all zero.
  const float b11[] = {0.01f, -0.004f};
  std::copy(std::begin(b00), std::end(b00), w.begin());
  std::copy(std::begin(b01), std::end(b01), w.begin() + 16);
  std::copy(std::begin(b10), std::end(b10), w.begin() + 32);
  std::copy(std::begin(b11), std::end(b11), w.begin() + 48);

  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, 3, 32, Fp4Format::kNvfp4, "hand");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->tensor_scale, 1.0f);
  EXPECT_EQ(m->scales, (std::vector<uint8_t>{0x7E, 0x40, 0x30, 0x01, 0x00, 0x00}));
  std::vector<uint8_t> packed(3 * 16, 0);
  packed[0] = 0x57;   // codes 7 (6), 5 (3)
  packed[1] = 0x1C;   // codes 0xC (-2), 1 (0.5)
  packed[2] = 0x10;   // codes 0 (0), 1 (0.5)
  packed[8] = 0x47;   // codes 7 (6), 4 (2)
  packed[9] = 0x1E;   // codes 0xE (-4), 1 (0.5)
  packed[16] = 0xD7;  // codes 7 (6), 0xD (-3)
  packed[17] = 0x03;  // code 3 (1.5)
  packed[24] = 0xC7;  // codes 7 (6), 0xC (-2)
  EXPECT_EQ(m->packed, packed);

  std::vector<float> expected(3 * 32, 0.0f);
  const float e00[] = {2688, 1344, -896, 224, 0, 224};
  const float e01[] = {12, 4, -8, 1, 0};
  const float e10[] = {3, -1.5f, 0.75f};
  const float e11[] = {6 * std::ldexp(1.0f, -9), -2 * std::ldexp(1.0f, -9)};
  std::copy(std::begin(e00), std::end(e00), expected.begin());
  std::copy(std::begin(e01), std::end(e01), expected.begin() + 16);
  std::copy(std::begin(e10), std::end(e10), expected.begin() + 32);
  std::copy(std::begin(e11), std::end(e11), expected.begin() + 48);
  EXPECT_EQ(Dequantize(*m), expected);
  EXPECT_EQ(m->BlockScale(0, 1), 2.0f);
  EXPECT_EQ(m->BlockScale(1, 1), std::ldexp(1.0f, -9));
}

TEST(Fp4QuantizeTest, Mxfp4HandComputedBlocks) {
  std::vector<float> w(4 * 32, 0.0f);
  // Row 0: amax 7, floor(log2 7) = 2 -> scale 2^0 (byte 127); 7 saturates to 6.
  const float r0[] = {6, -3, 0.5f, 7};
  // Row 1: amax 0.3, floor(log2 0.3) = -2 -> scale 2^-4 (byte 123); x16: 4.8->4, 1.6->1.5,
  // -0.8->-1. Row 2 is all zero -> byte 0.
  const float r1[] = {0.3f, 0.1f, -0.05f};
  // Row 3: amax 100, floor(log2 100) = 6 -> scale 2^4 (byte 131); /16: 6.25->6, 2.5->2 (tie),
  // -1.5.
  const float r3[] = {100, 40, -24};
  std::copy(std::begin(r0), std::end(r0), w.begin());
  std::copy(std::begin(r1), std::end(r1), w.begin() + 32);
  std::copy(std::begin(r3), std::end(r3), w.begin() + 96);

  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, 4, 32, Fp4Format::kMxfp4, "hand");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->scales, (std::vector<uint8_t>{127, 123, 0, 131}));
  std::vector<uint8_t> packed(4 * 16, 0);
  packed[0] = 0xD7;   // codes 7 (6), 0xD (-3)
  packed[1] = 0x71;   // codes 1 (0.5), 7 (6)
  packed[16] = 0x36;  // codes 6 (4), 3 (1.5)
  packed[17] = 0x0A;  // code 0xA (-1)
  packed[48] = 0x47;  // codes 7 (6), 4 (2)
  packed[49] = 0x0B;  // code 0xB (-1.5)
  EXPECT_EQ(m->packed, packed);

  std::vector<float> expected(4 * 32, 0.0f);
  const float e0[] = {6, -3, 0.5f, 6};
  const float e1[] = {0.25f, 0.09375f, -0.0625f};
  const float e3[] = {96, 32, -24};
  std::copy(std::begin(e0), std::end(e0), expected.begin());
  std::copy(std::begin(e1), std::end(e1), expected.begin() + 32);
  std::copy(std::begin(e3), std::end(e3), expected.begin() + 96);
  EXPECT_EQ(Dequantize(*m), expected);
  EXPECT_EQ(m->BlockScale(2, 0), std::ldexp(1.0f, -127));
}

TEST(Fp4QuantizeTest, AllZeroNvfp4MatrixHasUnitTensorScale) {
  const std::vector<float> w(2 * 16, 0.0f);
  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, 2, 16, Fp4Format::kNvfp4);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->tensor_scale, 1.0f);
  EXPECT_EQ(m->scales, std::vector<uint8_t>(2, 0));
  EXPECT_EQ(m->packed, std::vector<uint8_t>(16, 0));
  EXPECT_EQ(Dequantize(*m), w);
}

// Half the distance between neighbouring E2M1 magnitudes around x in [0, 6].
double HalfStep(double x) { return x < 2 ? 0.25 : (x < 4 ? 0.5 : 1.0); }

// Checks every element against the E2M1 rounding bound: |w - q| <= s * HalfStep(|w| / s), plus
// s * (|w| / s - 6) where the block scale rounded down and the element saturated. For NVFP4
// with a normal E4M3 scale, rounding the scale (3 mantissa bits) keeps |w| / s <= 6 / (15/16).
void ExpectElementErrorsBounded(const std::vector<float>& w, const Fp4Matrix& m) {
  const std::vector<float> q = Dequantize(m);
  const int64_t block = Fp4BlockSize(m.format);
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) {
      const size_t i = static_cast<size_t>(r * m.cols + c);
      const double s = m.BlockScale(r, c / block);
      const double err = std::fabs(static_cast<double>(w[i]) - q[i]);
      if (s == 0) {  // NVFP4 block whose scale rounded to 0: amax / 6 / tensor_scale <= 2^-10
        ASSERT_EQ(q[i], 0.0f);
        ASSERT_LE(std::fabs(w[i]), 6 * m.tensor_scale * std::ldexp(1.0, -10));
        continue;
      }
      const double x = std::fabs(w[i]) / s;
      const double bound = s * (HalfStep(std::min(x, 6.0)) + std::max(0.0, x - 6.0));
      ASSERT_LE(err, bound * (1 + 1e-6))
          << "element [" << r << ", " << c << "] w=" << w[i] << " q=" << q[i] << " s=" << s;
      const uint8_t scale_code = m.scales[static_cast<size_t>(r * m.scales_per_row() + c / block)];
      if (m.format == Fp4Format::kNvfp4 && scale_code >= 0x08) {
        ASSERT_LE(x, 6.0 * 16 / 15 * (1 + 1e-6)) << "element [" << r << ", " << c << "]";
      }
      if (m.format == Fp4Format::kMxfp4) {
        ASSERT_LT(x, 8.0);
      }
    }
  }
}

TEST(Fp4QuantizeTest, Nvfp4GaussianErrorBounds) {
  std::mt19937 rng(TestSeed());
  const int64_t rows = 64, cols = 512;
  const std::vector<float> w = Gaussian(rows * cols, rng, 0.02f);
  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, rows, cols, Fp4Format::kNvfp4, "w");
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectElementErrorsBounded(w, *m);
  const double err = NormalizedError(w, Dequantize(*m));
  std::printf("nvfp4 normalized error on gaussian data: %.4f\n", err);
  EXPECT_LT(err, 0.11);
  EXPECT_GT(err, 0.05);  // FP4 cannot do much better: a much smaller error means no rounding
}

TEST(Fp4QuantizeTest, Mxfp4GaussianErrorBounds) {
  std::mt19937 rng(TestSeed());
  const int64_t rows = 64, cols = 512;
  const std::vector<float> w = Gaussian(rows * cols, rng, 0.02f);
  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, rows, cols, Fp4Format::kMxfp4, "w");
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectElementErrorsBounded(w, *m);
  const double err = NormalizedError(w, Dequantize(*m));
  std::printf("mxfp4 normalized error on gaussian data: %.4f\n", err);
  EXPECT_LT(err, 0.13);
}

TEST(Fp4QuantizeTest, RowsOfVeryDifferentMagnitudesStayBounded) {
  // Rows spanning 12 decades push NVFP4 block scales into E4M3 subnormals and to zero.
  std::mt19937 rng(TestSeed());
  const int64_t rows = 13, cols = 64;
  std::vector<float> w = Gaussian(rows * cols, rng);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) w[r * cols + c] *= std::pow(10.0f, static_cast<float>(-r));
  }
  for (const Fp4Format format : {Fp4Format::kNvfp4, Fp4Format::kMxfp4}) {
    SCOPED_TRACE(Fp4FormatName(format));
    const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, rows, cols, format, "w");
    ASSERT_TRUE(m.ok()) << m.status();
    ExpectElementErrorsBounded(w, *m);
  }
}

TEST(Fp4QuantizeTest, OddRowCountsAndRowDequantization) {
  std::mt19937 rng(TestSeed());
  for (const Fp4Format format : {Fp4Format::kNvfp4, Fp4Format::kMxfp4}) {
    SCOPED_TRACE(Fp4FormatName(format));
    const int64_t rows = 7, cols = 3 * Fp4BlockSize(format);
    const std::vector<float> w = Gaussian(rows * cols, rng);
    const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, rows, cols, format, "w");
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->packed.size(), static_cast<size_t>(rows * cols / 2));
    EXPECT_EQ(m->scales.size(), static_cast<size_t>(rows * 3));
    EXPECT_EQ(m->scales_per_row(), 3);
    EXPECT_TRUE(ValidateFp4Matrix(*m, "w").ok());
    const std::vector<float> all = Dequantize(*m);
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      DequantizeFp4Row(*m, r, row);
      EXPECT_TRUE(std::equal(row.begin(), row.end(), all.begin() + r * cols)) << "row " << r;
    }
    ExpectElementErrorsBounded(w, *m);
  }
}

TEST(Fp4QuantizeTest, EmptyMatrixIsValid) {
  const absl::StatusOr<Fp4Matrix> m = QuantizeFp4({}, 0, 32, Fp4Format::kNvfp4);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->packed.empty());
  EXPECT_TRUE(ValidateFp4Matrix(*m, "empty").ok());
}

TEST(Fp4QuantizeTest, ColsNotMultipleOfBlockIsInvalidArgument) {
  const std::vector<float> w(2 * 24, 1.0f);
  const absl::StatusOr<Fp4Matrix> nv = QuantizeFp4(w, 2, 24, Fp4Format::kNvfp4, "layers.0.w");
  EXPECT_EQ(nv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nv.status().message(), HasSubstr("layers.0.w"));
  EXPECT_THAT(nv.status().message(), HasSubstr("24"));

  const std::vector<float> w48(48, 1.0f);
  const absl::StatusOr<Fp4Matrix> mx = QuantizeFp4(w48, 1, 48, Fp4Format::kMxfp4, "layers.1.w");
  EXPECT_EQ(mx.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mx.status().message(), HasSubstr("layers.1.w"));
  EXPECT_THAT(mx.status().message(), HasSubstr("32"));
}

TEST(Fp4QuantizeTest, SizeMismatchAndNegativeShapeAreInvalidArgument) {
  const std::vector<float> w(31, 1.0f);
  const absl::StatusOr<Fp4Matrix> short_input = QuantizeFp4(w, 2, 16, Fp4Format::kNvfp4, "q");
  EXPECT_EQ(short_input.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_input.status().message(), HasSubstr("q"));
  EXPECT_THAT(short_input.status().message(), HasSubstr("31"));

  const absl::StatusOr<Fp4Matrix> negative = QuantizeFp4({}, -1, 16, Fp4Format::kNvfp4, "k");
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.status().message(), HasSubstr("k"));
}

TEST(Fp4QuantizeTest, NonFiniteInputIsInvalidArgumentNamingMatrixAndElement) {
  for (const float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
        -std::numeric_limits<float>::infinity()}) {
    for (const Fp4Format format : {Fp4Format::kNvfp4, Fp4Format::kMxfp4}) {
      std::vector<float> w(3 * 32, 0.5f);
      w[1 * 32 + 5] = bad;
      const absl::StatusOr<Fp4Matrix> m = QuantizeFp4(w, 3, 32, format, "model.embed");
      EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(m.status().message(), HasSubstr("model.embed"));
      EXPECT_THAT(m.status().message(), HasSubstr("[1, 5]"));
    }
  }
}

TEST(ValidateFp4MatrixTest, CatchesWrongSizesScalesAndShape) {
  std::mt19937 rng(TestSeed());
  const std::vector<float> w = Gaussian(4 * 32, rng);
  const Fp4Matrix good = QuantizeFp4(w, 4, 32, Fp4Format::kNvfp4).value();
  EXPECT_TRUE(ValidateFp4Matrix(good, "good").ok());

  const auto expect_invalid = [](const Fp4Matrix& m, const char* what) {
    const absl::Status s = ValidateFp4Matrix(m, "blk.3.attn_q");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_THAT(s.message(), HasSubstr("blk.3.attn_q")) << what;
    EXPECT_THAT(s.message(), HasSubstr(what));
  };
  Fp4Matrix m = good;
  m.packed.pop_back();
  expect_invalid(m, "packed");
  m = good;
  m.scales.push_back(0);
  expect_invalid(m, "scales");
  m = good;
  m.tensor_scale = 0.0f;
  expect_invalid(m, "tensor_scale");
  m.tensor_scale = std::numeric_limits<float>::quiet_NaN();
  expect_invalid(m, "tensor_scale");
  m.tensor_scale = -1.0f;
  expect_invalid(m, "tensor_scale");
  m = good;
  m.scales[5] = 0xFF;  // E4M3 -NaN
  expect_invalid(m, "NaN");
  m = good;
  m.cols = 24;
  expect_invalid(m, "multiple");

  Fp4Matrix mx = QuantizeFp4(w, 4, 32, Fp4Format::kMxfp4).value();
  EXPECT_TRUE(ValidateFp4Matrix(mx, "mx").ok());
  mx.scales[2] = 0xFF;  // E8M0 NaN
  expect_invalid(mx, "NaN");
}

}  // namespace
}  // namespace rackserve::numerics
