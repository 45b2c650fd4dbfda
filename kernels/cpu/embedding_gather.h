// EmbeddingGather: out[t, :] = table[ids[t], :], the token embedding lookup.
//
// Shapes (row-major float32): table [vocab, hidden], ids [tokens] int32, out [tokens, hidden].
// Every id is checked before anything is written. Single-threaded; reentrant.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace rackserve::kernels::cpu {

// INVALID_ARGUMENT when vocab or hidden is not positive, tokens < 0, a pointer is null, out
// overlaps table, or an id lies outside [0, vocab) (the message names the token index and id).
absl::Status EmbeddingGather(const float* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                             int64_t tokens, float* out);

}  // namespace rackserve::kernels::cpu
