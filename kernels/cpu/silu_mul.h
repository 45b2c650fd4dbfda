// SiluMul: the gated activation of the Llama MLP (SwiGLU),
//   out[i, j] = silu(gate_up[i, j]) * gate_up[i, f + j],  silu(g) = g / (1 + exp(-g)),
// where each row of gate_up [m, 2f] holds the gate projection then the up projection.
//
// Shapes (row-major float32): gate_up [m, 2f], out [m, f]. out may be gate_up itself (the
// result is compacted into the front of the buffer); any other overlap is rejected.
// Single-threaded; reentrant.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace rackserve::kernels::cpu {

// INVALID_ARGUMENT when m < 0, f <= 0, a pointer is null, or out partially overlaps gate_up.
absl::Status SiluMul(const float* gate_up, int64_t m, int64_t f, float* out);

}  // namespace rackserve::kernels::cpu
