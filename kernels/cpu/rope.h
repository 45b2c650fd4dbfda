// ApplyRope: rotary position embedding, in place, in the Hugging Face "rotate_half" layout.
//
// x [tokens, num_heads, head_dim] float32, row-major. For token t and every head, element i
// (i < head_dim / 2) pairs with element i + head_dim / 2 and the pair (a, b) becomes
//   (a cos(theta) - b sin(theta), b cos(theta) + a sin(theta)),
// theta = positions[t] * inv_freq[i].
// inv_freq [head_dim / 2] comes already scaled (llama3 scaling is the caller's business). The
// angle and its cosine and sine are computed in double (a float angle loses ~1e-4 rad at
// positions in the thousands) once per token, then applied in float to all heads.
// Single-threaded; reentrant.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace rackserve::kernels::cpu {

// INVALID_ARGUMENT when tokens < 0, num_heads <= 0, head_dim is not positive and even, a pointer
// is null, or a position is negative (the message names the token index and the position).
absl::Status ApplyRope(float* x, int64_t tokens, int64_t num_heads, int64_t head_dim,
                       const int64_t* positions, const float* inv_freq);

}  // namespace rackserve::kernels::cpu
