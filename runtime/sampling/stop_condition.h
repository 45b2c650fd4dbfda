// Stop conditions: why a request's generation ends.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "runtime/sampling/sampling_params.h"

namespace rackserve::sampling {

enum class FinishReason {
  kNone,       // not finished
  kEos,        // generated an end-of-sequence token
  kStopToken,  // generated one of params.stop_token_ids
  kMaxTokens,  // reached params.max_new_tokens
  kLength,     // reached the model's context length (decided by the engine)
  kCancelled,  // cancelled by the client (decided by the engine)
};

// "none", "eos", "stop", "max_tokens", "length", "cancelled".
std::string_view FinishReasonName(FinishReason reason);

// Why generation stops after `token` became the num_generated-th generated token (1 for the
// first); kNone: go on. Checked in order: EOS (token in eos_ids, unless params.ignore_eos), stop
// ids, then num_generated >= max_new_tokens.
FinishReason CheckStop(int32_t token, int64_t num_generated, const SamplingParams& params,
                       std::span<const int32_t> eos_ids);

}  // namespace rackserve::sampling
