// RequestSpec: one generation request as rackctl reads it (flags of `generate`, a line of a batch
// file, a sample of the bench dataset), before it becomes a wire message. A plain value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rackserve::client {

struct RequestSpec {
  std::string id;                   // unique within a batch; "" lets the coordinator assign one
  std::string prompt;               // the prompt as text, or
  std::vector<int32_t> prompt_ids;  // as token ids (exactly one of the two is set)
  float temperature = 0.0f;         // 0 = greedy
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // (0, 1]
  uint64_t seed = 0;
  int64_t max_new_tokens = 128;  // >= 1
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;  // generate up to max_new_tokens (benchmarks)
};

}  // namespace rackserve::client
