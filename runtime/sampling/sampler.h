// SampleToken: picks the next token from one sequence's logits.
//
// Greedy when temperature == 0 or top_k == 1: the argmax, ties to the lowest id. Otherwise it
// samples from softmax(logits / temperature) restricted first to the top_k most likely tokens
// (ties to the lower id), then to the nucleus: the smallest set of the most likely remaining tokens
// whose renormalized mass reaches top_p. The one uniform number it draws is
// CounterUniform(seed, step), so the same (logits, params, step) always gives the same token.
// NaN logits count as -inf. A pure function: thread-safe.
#pragma once

#include <cstdint>
#include <span>

#include "runtime/sampling/sampling_params.h"

namespace rackserve::sampling {

// logits: [vocab] float, vocab >= 1. params: passed ValidateSamplingParams. step: index of the
// token being generated (0 for the first). Returns a token id in [0, vocab).
int32_t SampleToken(std::span<const float> logits, const SamplingParams& params, int64_t step);

}  // namespace rackserve::sampling
