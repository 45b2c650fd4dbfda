// Nvfp4SmallMGemm: y = x * W^T for a small batch of activations (1 <= m <= 16) against an NVFP4
// weight — the decode-time linear layer on Hopper, which has no FP4 tensor cores. The weight is
// read once from HBM and decoded in registers straight into bf16 tensor-core fragments
// (mma.sync m16n8k16, the m rows of x padded to 16), so the kernel is bound by the weight bytes:
// 0.5625 bytes per weight (packed E2M1 + one E4M3 scale per 16).
//
// Shapes and layouts (numerics::Fp4Matrix, kNvfp4):
//   x      bf16   [m, k] row-major, 16-byte aligned
//   packed uint8  [n, k/2]  E2M1 codes, element 2j in the low nibble of byte j
//   scales uint8  [n, k/16] E4M3, one per 16 consecutive elements of a row
//   y      float  [m, n] row-major, overwritten
// y[i][r] = tensor_scale * sum_c x[i][c] * e2m1(r, c) * scale(r, c / 16), accumulated in float32
// (block products are exact in bf16, so the only rounding is the fp32 accumulation).
// Requirements: n % 8 == 0, k % 128 == 0. The k dimension is split across warps (k_splits) and
// the partial sums added with float atomics, so y may differ between runs in the last bits.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace rackserve::kernels::cuda {

struct Nvfp4SmallMGemmParams {
  const __nv_bfloat16* x = nullptr;
  int64_t m = 0;  // in [1, 16]
  const uint8_t* packed = nullptr;
  const uint8_t* scales = nullptr;
  float tensor_scale = 1.0f;
  int64_t n = 0;
  int64_t k = 0;
  float* y = nullptr;
  int k_splits = 0;  // warps sharing one row group's k range; 0 = chosen from the SM count
};

// Zeroes y and enqueues the GEMM on `stream`. INVALID_ARGUMENT naming the field for null
// pointers, m outside [1, 16], n % 8 != 0, k % 128 != 0, or k_splits < 0; CUDA errors as
// cuda_status.h maps them.
absl::Status LaunchNvfp4SmallMGemm(const Nvfp4SmallMGemmParams& params, cudaStream_t stream);

}  // namespace rackserve::kernels::cuda
