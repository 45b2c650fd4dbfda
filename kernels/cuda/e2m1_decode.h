// E2M1 (FP4) codes to bf16 bit patterns with three byte permutes per four elements — the decode
// step of the NVFP4 GEMM kernels, written so that the same code runs (and is tested) on the host.
//
// Input: 16 bits holding four consecutive E2M1 codes, element i in bits [4i, 4i + 4) (the packed
// NVFP4 layout: element 2j in the low nibble of byte j). Output: two bf16x2 words, element 0 in
// the low half of `pair01`, element 1 in its high half, elements 2 and 3 likewise in `pair23`.
// The values are the unscaled E2M1 values {0, 0.5, 1, 1.5, 2, 3, 4, 6} with their signs, exact in
// bf16; multiplying by an E4M3 block scale stays exact in bf16 (at most 6 significant bits).
//
// How: a byte permute with an 8-entry table picks one byte per element. In the permute's default
// mode a selector nibble's bit 3 means "replicate the sign bit", so the selector is the codes with
// their sign bits cleared (codes & 0x7777): exactly the magnitude index. One permute picks the
// high bytes of the eight bf16 magnitudes, one the low bytes, two interleave them; the E2M1 sign
// bit is then moved to the bf16 sign bit.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define RS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RS_HOST_DEVICE inline
#endif

namespace rackserve::kernels::cuda {

// __byte_perm(a, b, selector) in its default mode: result byte i is byte (selector >> 4i) & 7 of
// the eight bytes {a, b} (a's bytes first), or that byte's sign replicated when bit 3 is set.
RS_HOST_DEVICE uint32_t BytePermute(uint32_t a, uint32_t b, uint32_t selector) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(a, b, selector);
#else
  const uint64_t bytes = (static_cast<uint64_t>(b) << 32) | a;
  uint32_t out = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t nibble = (selector >> (4 * i)) & 0xF;
    uint32_t byte = static_cast<uint32_t>(bytes >> (8 * (nibble & 7))) & 0xFF;
    if (nibble & 8) byte = (byte & 0x80) ? 0xFF : 0x00;
    out |= byte << (8 * i);
  }
  return out;
#endif
}

// bf16 bits of the E2M1 magnitudes by index (0, 0.5, 1, 1.5, 2, 3, 4, 6):
//   0x0000 0x3F00 0x3F80 0x3FC0 0x4000 0x4040 0x4080 0x40C0
// as byte tables for BytePermute: high bytes of indices 0-3 and 4-7, low bytes likewise.
inline constexpr uint32_t kE2m1HighBytes0123 = 0x3F3F3F00u;
inline constexpr uint32_t kE2m1HighBytes4567 = 0x40404040u;
inline constexpr uint32_t kE2m1LowBytes0123 = 0xC0800000u;
inline constexpr uint32_t kE2m1LowBytes4567 = 0xC0804000u;

RS_HOST_DEVICE void DecodeE2m1Quad(uint32_t codes, uint32_t* pair01, uint32_t* pair23) {
  const uint32_t index = codes & 0x7777u;
  const uint32_t high = BytePermute(kE2m1HighBytes0123, kE2m1HighBytes4567, index);
  const uint32_t low = BytePermute(kE2m1LowBytes0123, kE2m1LowBytes4567, index);
  // Interleave to [low0 high0 low1 high1] and [low2 high2 low3 high3].
  const uint32_t magnitude01 = BytePermute(low, high, 0x5140u);
  const uint32_t magnitude23 = BytePermute(low, high, 0x7362u);
  // E2M1 sign bits 3, 7, 11, 15 -> bf16 sign bits 15 and 31 of each pair.
  *pair01 = magnitude01 | ((codes << 12) & 0x00008000u) | ((codes << 24) & 0x80000000u);
  *pair23 = magnitude23 | ((codes << 4) & 0x00008000u) | ((codes << 16) & 0x80000000u);
}

}  // namespace rackserve::kernels::cuda
