// Exact sub-matrices of FP4 matrices (numerics::Fp4Matrix layout), for tensor-parallel shards.
//
// A slice holds the same E2M1 codes, block scales and tensor scale as the elements it covers in
// the full matrix, so its values are bit-identical to theirs. Row slices are contiguous byte
// ranges; column slices copy each row's range and must start and end on FP4 block boundaries
// (a block scale cannot be split).
//
// Fp4MatrixView lets a slice be cut from bytes that live elsewhere (a memory-mapped checkpoint)
// without copying the whole matrix. The functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "runtime/numerics/fp4_matrix.h"

namespace rackserve::parallel {

// A read-only FP4 matrix whose bytes are owned by someone else; the spans must outlive it.
// Invariant: packed.size() == rows * cols / 2 and scales.size() == rows * cols / block.
struct Fp4MatrixView {
  numerics::Fp4Format format = numerics::Fp4Format::kNvfp4;
  int64_t rows = 0;
  int64_t cols = 0;
  std::span<const uint8_t> packed;  // [rows, cols / 2]
  std::span<const uint8_t> scales;  // [rows, cols / block]
  float tensor_scale = 1.0f;
};

// A view of `m`, valid while `m` lives and is not modified.
Fp4MatrixView ViewOf(const numerics::Fp4Matrix& m);

// Rows [row_begin, row_begin + rows) of `m`. Precondition (checked):
// 0 <= row_begin, 0 <= rows, row_begin + rows <= m.rows.
numerics::Fp4Matrix SliceFp4Rows(const Fp4MatrixView& m, int64_t row_begin, int64_t rows);
numerics::Fp4Matrix SliceFp4Rows(const numerics::Fp4Matrix& m, int64_t row_begin, int64_t rows);

// Columns [col_begin, col_begin + cols) of every row of `m`. INVALID_ARGUMENT naming `name` when
// the range is negative or outside [0, m.cols), or col_begin or cols is not a multiple of the
// format's block size.
absl::StatusOr<numerics::Fp4Matrix> SliceFp4Cols(const Fp4MatrixView& m, int64_t col_begin,
                                                 int64_t cols, std::string_view name = "matrix");
absl::StatusOr<numerics::Fp4Matrix> SliceFp4Cols(const numerics::Fp4Matrix& m, int64_t col_begin,
                                                 int64_t cols, std::string_view name = "matrix");

}  // namespace rackserve::parallel
