#include <cuda_fp8.h>

#include <algorithm>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/e2m1_decode.h"
#include "kernels/cuda/nvfp4_small_m_gemm.h"

namespace rackserve::kernels::cuda {
namespace {

// Work of one warp: kTilesPerWarp tiles of 8 weight rows (n) that share each load of x, over
// the warp's share of k in chunks of kChunk elements. In a chunk, lane (g, t) — g = lane / 4,
// t = lane % 4 — reads 16 bytes (32 codes, two scale blocks) of row 8j + g of every tile j at
// columns [32t, 32t + 32), and the same 32 columns of x rows g and g + 8.
constexpr int kTilesPerWarp = 4;
constexpr int kRowsPerWarp = 8 * kTilesPerWarp;
constexpr int kChunk = 128;
constexpr int kWarpsPerBlock = 4;

// The mma's k index j of lane (g, t) is bound to a column of that lane's 32-column slice, for
// A (x) and B (the weight) alike, so the product sums the right pairs: in step s (0..7), fragment
// columns {2t, 2t + 1} hold slice columns {4s, 4s + 1} and {2t + 8, 2t + 9} hold {4s + 2, 4s + 3}.
// That makes each B register one decoded byte pair and each A register one aligned bf16 pair.
__device__ __forceinline__ void MmaBf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t MulBf16x2(uint32_t a, uint32_t b) {
  __nv_bfloat162 x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  const __nv_bfloat162 z = __hmul2(x, y);
  uint32_t out;
  memcpy(&out, &z, 4);
  return out;
}

// An E4M3 block scale as a bf16 pair (exact: E4M3 values are bf16 values).
__device__ __forceinline__ uint32_t ScalePair(uint32_t e4m3) {
  __nv_fp8_e4m3 fp8;
  fp8.__x = static_cast<__nv_fp8_storage_t>(e4m3);
  const __nv_bfloat16 s = __float2bfloat16(static_cast<float>(fp8));
  uint16_t bits;
  memcpy(&bits, &s, 2);
  return static_cast<uint32_t>(bits) * 0x10001u;
}

// 32 columns of one x row as 16 bf16 pairs; zeros for a padding row (row >= m).
__device__ __forceinline__ void LoadX(const Nvfp4SmallMGemmParams& p, int64_t row, int64_t col,
                                      uint32_t (&out)[16]) {
  if (row >= p.m) {
#pragma unroll
    for (int i = 0; i < 16; ++i) out[i] = 0;
    return;
  }
  const uint4* src = reinterpret_cast<const uint4*>(p.x + row * p.k + col);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint4 v = __ldg(src + i);
    out[4 * i] = v.x;
    out[4 * i + 1] = v.y;
    out[4 * i + 2] = v.z;
    out[4 * i + 3] = v.w;
  }
}

__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    Nvfp4SmallMGemmKernel(Nvfp4SmallMGemmParams p, int64_t chunks_per_split) {
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int64_t row_group = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int64_t first_row = row_group * kRowsPerWarp;
  if (first_row >= p.n) return;
  const int64_t chunks = p.k / kChunk;
  const int64_t chunk_begin = static_cast<int64_t>(blockIdx.y) * chunks_per_split;
  const int64_t chunk_end = min(chunks, chunk_begin + chunks_per_split);
  const int64_t row_bytes = p.k / 2;
  const int64_t row_scales = p.k / 16;

  float acc[kTilesPerWarp][4] = {};
  for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
    const int64_t col = chunk * kChunk + 32 * t;  // first column of this lane's slice
    uint32_t x_low[16], x_high[16];               // x rows g and g + 8
    LoadX(p, g, col, x_low);
    LoadX(p, g + 8, col, x_high);
#pragma unroll
    for (int j = 0; j < kTilesPerWarp; ++j) {
      const int64_t row = first_row + 8 * j + g;
      if (first_row + 8 * j >= p.n) break;  // warp-uniform: the whole tile is past n
      const uint4 codes = __ldg(reinterpret_cast<const uint4*>(p.packed + row * row_bytes + col / 2));
      const uint16_t scale_bytes =
          __ldg(reinterpret_cast<const uint16_t*>(p.scales + row * row_scales + col / 16));
      const uint32_t scale[2] = {ScalePair(scale_bytes & 0xFF), ScalePair(scale_bytes >> 8)};
      const uint32_t words[4] = {codes.x, codes.y, codes.z, codes.w};
#pragma unroll
      for (int s = 0; s < 8; ++s) {
        uint32_t b01, b23;
        DecodeE2m1Quad((words[s >> 1] >> (16 * (s & 1))) & 0xFFFF, &b01, &b23);
        b01 = MulBf16x2(b01, scale[s >> 2]);
        b23 = MulBf16x2(b23, scale[s >> 2]);
        const uint32_t a[4] = {x_low[2 * s], x_high[2 * s], x_low[2 * s + 1], x_high[2 * s + 1]};
        MmaBf16(acc[j], a, b01, b23);
      }
    }
  }
  // Accumulator element e of lane (g, t): x row g (e < 2) or g + 8, weight row 8j + 2t + e % 2.
#pragma unroll
  for (int j = 0; j < kTilesPerWarp; ++j) {
    const int64_t row = first_row + 8 * j + 2 * t;
    if (first_row + 8 * j >= p.n) break;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t m = g + (e >= 2 ? 8 : 0);
      if (m < p.m) atomicAdd(p.y + m * p.n + row + (e & 1), acc[j][e] * p.tensor_scale);
    }
  }
}

// Streaming multiprocessors of the current device.
absl::StatusOr<int> MultiprocessorCount() {
  int device = 0;
  int count = 0;
  RS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  RS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

}  // namespace

absl::Status LaunchNvfp4SmallMGemm(const Nvfp4SmallMGemmParams& p, cudaStream_t stream) {
  if (p.x == nullptr) return absl::InvalidArgumentError("Nvfp4SmallMGemm: x is null");
  if (p.packed == nullptr) return absl::InvalidArgumentError("Nvfp4SmallMGemm: packed is null");
  if (p.scales == nullptr) return absl::InvalidArgumentError("Nvfp4SmallMGemm: scales is null");
  if (p.y == nullptr) return absl::InvalidArgumentError("Nvfp4SmallMGemm: y is null");
  if (p.m < 1 || p.m > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("Nvfp4SmallMGemm: m = ", p.m, " outside [1, 16]"));
  }
  if (p.n <= 0 || p.n % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Nvfp4SmallMGemm: n = ", p.n, " is not a positive multiple of 8"));
  }
  if (p.k <= 0 || p.k % kChunk != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Nvfp4SmallMGemm: k = ", p.k, " is not a positive multiple of ", kChunk));
  }
  if (p.k_splits < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Nvfp4SmallMGemm: k_splits = ", p.k_splits, " < 0"));
  }
  const int64_t row_groups = (p.n + kRowsPerWarp - 1) / kRowsPerWarp;
  const int64_t chunks = p.k / kChunk;
  int64_t splits = p.k_splits;
  if (splits == 0) {
    // Enough warps in flight to cover HBM latency: about 32 per SM, each with >= 2 chunks.
    absl::StatusOr<int> sms = MultiprocessorCount();
    if (!sms.ok()) return sms.status();
    const int64_t wanted = static_cast<int64_t>(*sms) * 32;
    splits = std::clamp<int64_t>((wanted + row_groups - 1) / row_groups, 1,
                                 std::max<int64_t>(1, chunks / 2));
  }
  splits = std::min(splits, chunks);
  const int64_t chunks_per_split = (chunks + splits - 1) / splits;
  splits = (chunks + chunks_per_split - 1) / chunks_per_split;
  const int64_t blocks = (row_groups + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7FFFFFFF || splits > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("Nvfp4SmallMGemm: [", p.n, ", ", p.k, "] exceeds one launch"));
  }
  RS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(p.y, 0, p.m * p.n * sizeof(float), stream));
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(splits));
  Nvfp4SmallMGemmKernel<<<grid, 32 * kWarpsPerBlock, 0, stream>>>(p, chunks_per_split);
  RS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cuda
