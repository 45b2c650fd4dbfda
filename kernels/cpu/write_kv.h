// WriteKv: stores the keys and values of new tokens into their slots of a paged KV cache
// (kernels/cpu/paged_kv_layer.h has the layout).
//
// Shapes (row-major float32): k_new, v_new [tokens, num_kv_heads, head_dim]; slots [tokens],
// slot = block * block_size + offset. Every slot is checked before anything is written. Two
// tokens with the same slot: the later one wins. Single-threaded; reentrant for disjoint slots.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/paged_kv_layer.h"

namespace rackserve::kernels::cpu {

// INVALID_ARGUMENT when the cache view is invalid, tokens < 0, a pointer is null, or a slot lies
// outside [0, num_blocks * block_size) (the message names the token index and the slot).
absl::Status WriteKv(const PagedKvLayer& cache, const float* k_new, const float* v_new,
                     const int64_t* slots, int64_t tokens);

}  // namespace rackserve::kernels::cpu
