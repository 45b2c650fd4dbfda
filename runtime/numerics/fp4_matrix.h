// Fp4Matrix: a row-major weight matrix stored in a block-scaled 4-bit float format.
//
// Layout (the spec; identical to NVIDIA ModelOpt NVFP4 checkpoints for kNvfp4):
//   packed  uint8 [rows, cols / 2]  E2M1 codes, two per byte along a row; element 2j is the
//                                   LOW nibble of byte j, element 2j+1 the HIGH nibble.
//   scales  uint8 [rows, cols / B]  one scale per B consecutive elements of a row (along K):
//                                   kNvfp4: B = 16, float8 E4M3 (fn);
//                                   kMxfp4: B = 32, E8M0 (power of two, 0xFF = NaN).
//   tensor_scale float              kNvfp4 only (ModelOpt `weight_scale_2`); 1 for kMxfp4.
// Element value: w[r][c] = e2m1(r, c) * scale(r, c / B) * tensor_scale.
// `rows` is the output dimension (N) and `cols` the input dimension (K) of a linear layer
// y = x W^T; cols must be a multiple of B.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::numerics {

enum class Fp4Format {
  kNvfp4,  // E2M1 + E4M3 scale per 16 + FP32 tensor scale
  kMxfp4,  // E2M1 + E8M0 scale per 32
};

// Elements per block scale of `format` (16 or 32).
int Fp4BlockSize(Fp4Format format);
std::string_view Fp4FormatName(Fp4Format format);
// Parses "nvfp4" / "mxfp4" (case-insensitive); INVALID_ARGUMENT naming the value otherwise.
absl::StatusOr<Fp4Format> ParseFp4Format(std::string_view name);

struct Fp4Matrix {
  Fp4Format format = Fp4Format::kNvfp4;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> packed;  // [rows, cols / 2]
  std::vector<uint8_t> scales;  // [rows, cols / block]
  float tensor_scale = 1.0f;

  int64_t scales_per_row() const { return cols / Fp4BlockSize(format); }
  // Value of the scale of block `block` in row `row`, tensor scale included.
  float BlockScale(int64_t row, int64_t block) const;
};

// Quantizes a row-major float matrix [rows, cols]. NVFP4 follows ModelOpt: tensor_scale =
// amax / (6 * 448); block scale = E4M3(block_amax / 6 / tensor_scale); elements rounded to
// nearest-even E2M1 after dividing by (block scale * tensor_scale). MXFP4 follows the OCP MX
// spec: block scale 2^(floor(log2(block_amax)) - 2), elements rounded and saturated to +-6.
// INVALID_ARGUMENT when cols is not a multiple of the block size, a size mismatches, or an
// element is not finite (the message names `name`, e.g. the tensor being quantized).
absl::StatusOr<Fp4Matrix> QuantizeFp4(std::span<const float> values, int64_t rows, int64_t cols,
                                      Fp4Format format, std::string_view name = "matrix");

// Dequantizes the whole matrix into out[rows * cols] (row-major).
void DequantizeFp4(const Fp4Matrix& m, std::span<float> out);

// Dequantizes row `row` into out[cols].
void DequantizeFp4Row(const Fp4Matrix& m, int64_t row, std::span<float> out);

// Checks that packed and scales have the sizes rows/cols/format imply, that no block scale is
// NaN and that tensor_scale is finite and positive; INVALID_ARGUMENT naming `name` otherwise.
absl::Status ValidateFp4Matrix(const Fp4Matrix& m, std::string_view name);

}  // namespace rackserve::numerics
