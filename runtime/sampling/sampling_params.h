// SamplingParams: how one request picks its tokens and when it stops, as sent by the client.
// A plain value; ValidateSamplingParams() checks it against the model's vocabulary.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace rackserve::sampling {

struct SamplingParams {
  float temperature = 0.0f;     // >= 0; 0 = greedy (argmax, ties to the lowest id)
  int top_k = 0;                // keep the k most likely tokens; 0 = off; >= vocab = off
  float top_p = 1.0f;           // (0, 1]: keep the smallest most-likely set with mass >= top_p
  uint64_t seed = 0;            // per-request seed of the counter-based generator
  int64_t max_new_tokens = 16;  // >= 1
  std::vector<int32_t> stop_token_ids;  // each in [0, vocab_size)
  bool ignore_eos = false;  // keep generating past EOS (benchmarks with fixed output lengths)
};

// INVALID_ARGUMENT naming the field and the value: temperature negative or not finite, top_k < 0,
// top_p outside (0, 1], max_new_tokens < 1, a stop_token_ids entry outside [0, vocab_size), or
// vocab_size < 1.
absl::Status ValidateSamplingParams(const SamplingParams& params, int64_t vocab_size);

}  // namespace rackserve::sampling
