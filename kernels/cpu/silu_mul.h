// SiluMul: the gated activation of the Llama MLP (SwiGLU),
//   out[i, j] = silu(gate[i, j]) * up[i, j],  silu(g) = g / (1 + exp(-g)),
// where gate and up are the outputs of the gate and up projections.
//
// Shapes (row-major float32): gate [m, f], up [m, f], out [m, f]. out may be gate or up itself
// (every element is read before it is written); any other overlap is rejected.
// Single-threaded; reentrant.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace rackserve::kernels::cpu {

// INVALID_ARGUMENT when m < 0, f <= 0, a pointer is null, or out partially overlaps an input.
absl::Status SiluMul(const float* gate, const float* up, int64_t m, int64_t f, float* out);

}  // namespace rackserve::kernels::cpu
