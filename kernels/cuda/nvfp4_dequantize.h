// Nvfp4Dequantize: expands an NVFP4 matrix on the GPU into bf16, the first step of the large-M
// GEMM path on Hopper (which has no FP4 tensor cores): dequantize a layer into a workspace just in
// time, then run a bf16 tensor-core GEMM on it.
//
// Layout (numerics::Fp4Matrix, kNvfp4): packed uint8 [rows, cols/2] E2M1 codes, element 2j in the
// low nibble of byte j; scales E4M3 [rows, cols/16]; tensor_scale float.
// out[r][c] = bf16(e2m1 * e4m3 scale * tensor_scale), row-major [rows, cols].
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace rackserve::kernels::cuda {

struct Nvfp4DequantizeParams {
  const uint8_t* packed;  // device [rows, cols / 2]
  const uint8_t* scales;  // device [rows, cols / 16] E4M3
  float tensor_scale;
  int64_t rows;
  int64_t cols;        // multiple of 16
  __nv_bfloat16* out;  // device [rows, cols]
};

// Enqueues the expansion on `stream`. INVALID_ARGUMENT for null pointers or sizes that are not
// positive or cols not a multiple of 16; CUDA errors as cuda_status.h maps them.
absl::Status LaunchNvfp4Dequantize(const Nvfp4DequantizeParams& params, cudaStream_t stream);

}  // namespace rackserve::kernels::cuda
