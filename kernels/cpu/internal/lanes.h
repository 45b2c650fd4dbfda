// Lanes: kLanes floats that GCC and Clang keep in vector registers (GNU vector extension;
// one AVX register, two SSE or NEON registers), with unaligned loads. The CPU ops
// accumulate in Lanes and reduce them in a fixed order, so results do not depend on threading.
//
// Only for use inside inline functions and functions marked RS_CPU_MULTIVERSION (passing Lanes
// by value across a non-inlined call would depend on the ISA's calling convention).
#pragma once

#include <cstring>

namespace rackserve::kernels::cpu::internal {

inline constexpr int kLanes = 8;

using Lanes = float __attribute__((vector_size(kLanes * sizeof(float))));

// Loads p[0 : kLanes] (any alignment) into *out.
[[gnu::always_inline]] inline void LoadLanes(const float* p, Lanes* out) {
  std::memcpy(out, p, sizeof(Lanes));
}

// v[0] + v[1] + ... + v[kLanes - 1], in that order.
[[gnu::always_inline]] inline float SumLanes(const Lanes& v) {
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

}  // namespace rackserve::kernels::cpu::internal
