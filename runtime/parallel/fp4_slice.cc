#include "runtime/parallel/fp4_slice.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::parallel {
namespace {

void CheckViewSizes(const Fp4MatrixView& m) {
  RS_CHECK(m.rows >= 0 && m.cols >= 0);
  RS_CHECK(m.cols % numerics::Fp4BlockSize(m.format) == 0);
  RS_CHECK(m.packed.size() == static_cast<size_t>(m.rows * m.cols / 2));
  RS_CHECK(m.scales.size() ==
           static_cast<size_t>(m.rows * (m.cols / numerics::Fp4BlockSize(m.format))));
}

// A matrix of `m`'s format and tensor scale with room for [rows, cols].
numerics::Fp4Matrix EmptyLike(const Fp4MatrixView& m, int64_t rows, int64_t cols) {
  numerics::Fp4Matrix out;
  out.format = m.format;
  out.rows = rows;
  out.cols = cols;
  out.tensor_scale = m.tensor_scale;
  out.packed.reserve(static_cast<size_t>(rows * cols / 2));
  out.scales.reserve(static_cast<size_t>(rows * (cols / numerics::Fp4BlockSize(m.format))));
  return out;
}

}  // namespace

Fp4MatrixView ViewOf(const numerics::Fp4Matrix& m) {
  return {m.format, m.rows, m.cols, m.packed, m.scales, m.tensor_scale};
}

numerics::Fp4Matrix SliceFp4Rows(const Fp4MatrixView& m, int64_t row_begin, int64_t rows) {
  CheckViewSizes(m);
  RS_CHECK(row_begin >= 0 && rows >= 0 && row_begin <= m.rows - rows);
  numerics::Fp4Matrix out = EmptyLike(m, rows, m.cols);
  const auto packed_row = static_cast<size_t>(m.cols / 2);
  const auto scales_row = static_cast<size_t>(m.cols / numerics::Fp4BlockSize(m.format));
  const auto first = static_cast<size_t>(row_begin);
  const auto count = static_cast<size_t>(rows);
  const auto packed = m.packed.subspan(first * packed_row, count * packed_row);
  const auto scales = m.scales.subspan(first * scales_row, count * scales_row);
  out.packed.assign(packed.begin(), packed.end());
  out.scales.assign(scales.begin(), scales.end());
  return out;
}

numerics::Fp4Matrix SliceFp4Rows(const numerics::Fp4Matrix& m, int64_t row_begin, int64_t rows) {
  return SliceFp4Rows(ViewOf(m), row_begin, rows);
}

absl::StatusOr<numerics::Fp4Matrix> SliceFp4Cols(const Fp4MatrixView& m, int64_t col_begin,
                                                 int64_t cols, std::string_view name) {
  CheckViewSizes(m);
  const int64_t block = numerics::Fp4BlockSize(m.format);
  if (col_begin < 0 || cols < 0 || col_begin > m.cols - cols) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": columns [", col_begin,
                                                   ", ", col_begin + cols, ") are outside its ",
                                                   m.cols, " columns"));
  }
  if (col_begin % block != 0 || cols % block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": columns [", col_begin, ", ", col_begin + cols,
                     ") do not start and end on ", std::string(numerics::Fp4FormatName(m.format)),
                     " block boundaries (multiples of ", block, ")"));
  }
  numerics::Fp4Matrix out = EmptyLike(m, m.rows, cols);
  const int64_t packed_row = m.cols / 2;
  const int64_t scales_row = m.cols / block;
  for (int64_t r = 0; r < m.rows; ++r) {
    const auto packed = m.packed.subspan(static_cast<size_t>(r * packed_row + col_begin / 2),
                                         static_cast<size_t>(cols / 2));
    const auto scales = m.scales.subspan(static_cast<size_t>(r * scales_row + col_begin / block),
                                         static_cast<size_t>(cols / block));
    out.packed.insert(out.packed.end(), packed.begin(), packed.end());
    out.scales.insert(out.scales.end(), scales.begin(), scales.end());
  }
  return out;
}

absl::StatusOr<numerics::Fp4Matrix> SliceFp4Cols(const numerics::Fp4Matrix& m, int64_t col_begin,
                                                 int64_t cols, std::string_view name) {
  return SliceFp4Cols(ViewOf(m), col_begin, cols, name);
}

}  // namespace rackserve::parallel
