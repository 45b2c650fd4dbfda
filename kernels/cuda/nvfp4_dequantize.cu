#include <cuda_fp8.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/nvfp4_dequantize.h"

namespace rackserve::kernels::cuda {
namespace {

__device__ __forceinline__ float E2m1Value(uint32_t code) {
  constexpr float kMagnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float mag = kMagnitudes[code & 0x7];
  return (code & 0x8) ? -mag : mag;
}

// One thread expands one 16-element block: 8 packed bytes and one E4M3 scale.
__global__ void Nvfp4DequantizeKernel(Nvfp4DequantizeParams p) {
  const int64_t blocks_per_row = p.cols / 16;
  const int64_t block = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (block >= p.rows * blocks_per_row) return;
  __nv_fp8_e4m3 scale_fp8;
  scale_fp8.__x = p.scales[block];
  const float scale = static_cast<float>(scale_fp8) * p.tensor_scale;
  const uint2 bytes = *reinterpret_cast<const uint2*>(p.packed + block * 8);
  __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(p.out + block * 16);
  const uint32_t words[2] = {bytes.x, bytes.y};
#pragma unroll
  for (int w = 0; w < 2; ++w) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const uint32_t byte = (words[w] >> (8 * b)) & 0xFF;
      out[w * 4 + b] =
          __floats2bfloat162_rn(E2m1Value(byte & 0xF) * scale, E2m1Value(byte >> 4) * scale);
    }
  }
}

}  // namespace

absl::Status LaunchNvfp4Dequantize(const Nvfp4DequantizeParams& p, cudaStream_t stream) {
  if (p.packed == nullptr || p.scales == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError("Nvfp4Dequantize: null pointer argument");
  }
  if (p.rows <= 0 || p.cols <= 0 || p.cols % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("Nvfp4Dequantize: shape [", p.rows, ", ", p.cols,
                                                   "] must be positive with cols % 16 == 0"));
  }
  constexpr int kThreads = 256;
  const int64_t blocks = p.rows * (p.cols / 16);
  const int64_t grid = (blocks + kThreads - 1) / kThreads;
  if (grid > 0x7FFFFFFF) {
    return absl::InvalidArgumentError(
        absl::StrCat("Nvfp4Dequantize: matrix of ", blocks, " blocks exceeds one launch"));
  }
  Nvfp4DequantizeKernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p);
  RS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cuda
