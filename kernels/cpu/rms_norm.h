// RmsNorm and its fused residual form AddRmsNorm: the Llama normalization,
//   out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * weight[:].
// The two share one header because AddRmsNorm is RmsNorm with the residual add folded in.
//
// Shapes (row-major float32): x, out, residual [m, hidden]; weight [hidden]. The mean of
// squares is accumulated in double, the rest in float. Single-threaded (a pass over m * hidden
// floats; the linears around it dominate). Thread-safety: reentrant.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace rackserve::kernels::cpu {

// out = RmsNorm(x) * weight. out may alias x (in place); no other overlap.
// INVALID_ARGUMENT when m < 0, hidden <= 0, eps is negative or not finite, or a pointer is null.
absl::Status RmsNorm(const float* x, const float* weight, int64_t m, int64_t hidden, float eps,
                     float* out);

// residual += x, then out = RmsNorm(residual) * weight. out may alias x; out must not overlap
// residual (INVALID_ARGUMENT). Other errors as RmsNorm.
absl::Status AddRmsNorm(float* residual, const float* x, const float* weight, int64_t m,
                        int64_t hidden, float eps, float* out);

}  // namespace rackserve::kernels::cpu
