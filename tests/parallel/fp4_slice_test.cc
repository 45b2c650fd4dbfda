// Tests SliceFp4Rows / SliceFp4Cols on fresh random NVFP4 and MXFP4 matrices: every slice
// dequantizes to exactly the same floats as the elements it covers in the full matrix, and
// misaligned or out-of-range column slices are rejected naming the matrix.
#include "runtime/parallel/fp4_slice.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

#include "runtime/base/status_macros.h"

namespace rackserve::parallel {
namespace {

using numerics::Fp4Format;
using numerics::Fp4Matrix;
using ::testing::HasSubstr;

constexpr int64_t kRows = 6;
constexpr int64_t kCols = 128;

uint32_t TestSeed() {
  const uint32_t seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  return seed;
}

Fp4Matrix RandomMatrix(Fp4Format format, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(kRows * kCols));
  for (float& v : values) v = dist(rng);
  auto m = numerics::QuantizeFp4(values, kRows, kCols, format);
  RS_CHECK(m.ok());
  return *std::move(m);
}

std::vector<float> Dequantize(const Fp4Matrix& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  numerics::DequantizeFp4(m, out);
  return out;
}

class Fp4SliceTest : public ::testing::TestWithParam<Fp4Format> {
 protected:
  Fp4SliceTest() : rng_(TestSeed()), full_(RandomMatrix(GetParam(), rng_)) {}

  std::mt19937 rng_;
  Fp4Matrix full_;
};

TEST_P(Fp4SliceTest, RowSlicesMatchTheFullMatrixExactly) {
  const std::vector<float> full = Dequantize(full_);
  for (int64_t begin = 0; begin <= kRows; ++begin) {
    for (int64_t rows = 0; begin + rows <= kRows; ++rows) {
      const Fp4Matrix slice = SliceFp4Rows(full_, begin, rows);
      ASSERT_EQ(slice.rows, rows);
      ASSERT_EQ(slice.cols, kCols);
      EXPECT_EQ(slice.format, full_.format);
      EXPECT_EQ(slice.tensor_scale, full_.tensor_scale);
      EXPECT_TRUE(numerics::ValidateFp4Matrix(slice, "slice").ok());
      const std::vector<float> got = Dequantize(slice);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < kCols; ++c) {
          ASSERT_EQ(got[r * kCols + c], full[(begin + r) * kCols + c])
              << "rows [" << begin << ", +" << rows << ") element " << r << ", " << c;
        }
      }
    }
  }
}

TEST_P(Fp4SliceTest, ColumnSlicesMatchTheFullMatrixExactly) {
  const std::vector<float> full = Dequantize(full_);
  const int64_t block = numerics::Fp4BlockSize(GetParam());
  for (int64_t begin = 0; begin <= kCols; begin += block) {
    for (int64_t cols = 0; begin + cols <= kCols; cols += block) {
      auto slice = SliceFp4Cols(full_, begin, cols);
      ASSERT_TRUE(slice.ok()) << slice.status();
      ASSERT_EQ(slice->rows, kRows);
      ASSERT_EQ(slice->cols, cols);
      EXPECT_EQ(slice->tensor_scale, full_.tensor_scale);
      EXPECT_TRUE(numerics::ValidateFp4Matrix(*slice, "slice").ok());
      const std::vector<float> got = Dequantize(*slice);
      for (int64_t r = 0; r < kRows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          ASSERT_EQ(got[r * cols + c], full[r * kCols + begin + c])
              << "cols [" << begin << ", +" << cols << ") element " << r << ", " << c;
        }
      }
    }
  }
}

TEST_P(Fp4SliceTest, SlicingAViewEqualsSlicingTheMatrix) {
  const Fp4MatrixView view = ViewOf(full_);
  const Fp4Matrix rows = SliceFp4Rows(view, 2, 3);
  EXPECT_EQ(rows.packed, SliceFp4Rows(full_, 2, 3).packed);
  EXPECT_EQ(rows.scales, SliceFp4Rows(full_, 2, 3).scales);
  const int64_t block = numerics::Fp4BlockSize(GetParam());
  auto cols = SliceFp4Cols(view, block, 2 * block);
  ASSERT_TRUE(cols.ok()) << cols.status();
  EXPECT_EQ(cols->packed, SliceFp4Cols(full_, block, 2 * block)->packed);
  EXPECT_EQ(cols->scales, SliceFp4Cols(full_, block, 2 * block)->scales);
}

TEST_P(Fp4SliceTest, ColumnSlicesOffBlockBoundariesAreRejected) {
  const int64_t block = numerics::Fp4BlockSize(GetParam());
  for (const auto& [begin, cols] :
       {std::pair{block / 2, block}, {int64_t{0}, block + 2}, {int64_t{2}, kCols - 2}}) {
    auto slice = SliceFp4Cols(full_, begin, cols, "layer.o_proj");
    ASSERT_FALSE(slice.ok()) << begin << " +" << cols;
    EXPECT_EQ(slice.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(slice.status().message(), HasSubstr("layer.o_proj"));
    EXPECT_THAT(slice.status().message(), HasSubstr("block boundaries"));
  }
}

TEST_P(Fp4SliceTest, ColumnSlicesOutsideTheMatrixAreRejected) {
  const int64_t block = numerics::Fp4BlockSize(GetParam());
  for (const auto& [begin, cols] :
       {std::pair{-block, block}, {kCols, block}, {int64_t{0}, -block}, {block, kCols}}) {
    auto slice = SliceFp4Cols(full_, begin, cols, "layer.down_proj");
    ASSERT_FALSE(slice.ok()) << begin << " +" << cols;
    EXPECT_EQ(slice.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(slice.status().message(), HasSubstr("layer.down_proj"));
    EXPECT_THAT(slice.status().message(), HasSubstr("outside"));
  }
}

TEST_P(Fp4SliceTest, RowSlicesOutsideTheMatrixAreABug) {
  EXPECT_DEATH(SliceFp4Rows(full_, 4, 3), "invariant broken");
  EXPECT_DEATH(SliceFp4Rows(full_, -1, 1), "invariant broken");
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp4SliceTest,
                         ::testing::Values(Fp4Format::kNvfp4, Fp4Format::kMxfp4),
                         [](const ::testing::TestParamInfo<Fp4Format>& info) {
                           return std::string(numerics::Fp4FormatName(info.param));
                         });

}  // namespace
}  // namespace rackserve::parallel
