// PanelDot: the inner loops of the linear ops (Fp4Linear, DenseLinear).
//
// A panel is kPanelRows weight rows over one stretch of K. PanelDot multiplies every
// activation row by every panel row, two activation rows at a time (2 x 4 dot products share
// each load), accumulating in Lanes (vector registers), then reduces each dot in a fixed
// order. The result therefore does not depend on how the caller splits N across threads.
//
// Header-only and always inlined, so it is compiled for the ISA of each caller marked
// RS_CPU_MULTIVERSION.
#pragma once

#include <cstdint>

#include "kernels/cpu/internal/lanes.h"

namespace rackserve::kernels::cpu::internal {

inline constexpr int kPanelRows = 4;

// sums[i * kPanelRows + r] += sum over k in [0, kc) of w[r][k] * x[i * ldx + k],
// for i in [0, rows) and r in [0, kPanelRows). The w[r] may repeat (a short panel points its
// missing rows at a real one and ignores their sums).
[[gnu::always_inline]] inline void PanelDot(const float* const* w, const float* x, int64_t ldx,
                                            int64_t rows, int64_t kc, float* sums) {
  const int64_t k_vec = kc - kc % kLanes;
  const float* w0 = w[0];
  const float* w1 = w[1];
  const float* w2 = w[2];
  const float* w3 = w[3];
  int64_t i = 0;
  for (; i + 2 <= rows; i += 2) {
    const float* x0 = x + i * ldx;
    const float* x1 = x0 + ldx;
    Lanes a00 = {}, a01 = {}, a02 = {}, a03 = {}, a10 = {}, a11 = {}, a12 = {}, a13 = {};
    for (int64_t k = 0; k < k_vec; k += kLanes) {
      Lanes xa, xb, v0, v1, v2, v3;
      LoadLanes(x0 + k, &xa);
      LoadLanes(x1 + k, &xb);
      LoadLanes(w0 + k, &v0);
      LoadLanes(w1 + k, &v1);
      LoadLanes(w2 + k, &v2);
      LoadLanes(w3 + k, &v3);
      a00 += v0 * xa;
      a01 += v1 * xa;
      a02 += v2 * xa;
      a03 += v3 * xa;
      a10 += v0 * xb;
      a11 += v1 * xb;
      a12 += v2 * xb;
      a13 += v3 * xb;
    }
    float s[2][kPanelRows] = {{SumLanes(a00), SumLanes(a01), SumLanes(a02), SumLanes(a03)},
                              {SumLanes(a10), SumLanes(a11), SumLanes(a12), SumLanes(a13)}};
    for (int64_t k = k_vec; k < kc; ++k) {
      s[0][0] += w0[k] * x0[k];
      s[0][1] += w1[k] * x0[k];
      s[0][2] += w2[k] * x0[k];
      s[0][3] += w3[k] * x0[k];
      s[1][0] += w0[k] * x1[k];
      s[1][1] += w1[k] * x1[k];
      s[1][2] += w2[k] * x1[k];
      s[1][3] += w3[k] * x1[k];
    }
    for (int r = 0; r < kPanelRows; ++r) {
      sums[i * kPanelRows + r] += s[0][r];
      sums[(i + 1) * kPanelRows + r] += s[1][r];
    }
  }
  if (i < rows) {
    const float* x0 = x + i * ldx;
    Lanes a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t k = 0; k < k_vec; k += kLanes) {
      Lanes xa, v0, v1, v2, v3;
      LoadLanes(x0 + k, &xa);
      LoadLanes(w0 + k, &v0);
      LoadLanes(w1 + k, &v1);
      LoadLanes(w2 + k, &v2);
      LoadLanes(w3 + k, &v3);
      a0 += v0 * xa;
      a1 += v1 * xa;
      a2 += v2 * xa;
      a3 += v3 * xa;
    }
    float s[kPanelRows] = {SumLanes(a0), SumLanes(a1), SumLanes(a2), SumLanes(a3)};
    for (int64_t k = k_vec; k < kc; ++k) {
      s[0] += w0[k] * x0[k];
      s[1] += w1[k] * x0[k];
      s[2] += w2[k] * x0[k];
      s[3] += w3[k] * x0[k];
    }
    for (int r = 0; r < kPanelRows; ++r) sums[i * kPanelRows + r] += s[r];
  }
}

}  // namespace rackserve::kernels::cpu::internal
