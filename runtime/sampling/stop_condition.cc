#include "runtime/sampling/stop_condition.h"

#include <algorithm>

#include "runtime/base/status_macros.h"

namespace rackserve::sampling {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStopToken:
      return "stop";
    case FinishReason::kMaxTokens:
      return "max_tokens";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  RS_CHECK(false);  // not an enumerator
  return "";
}

FinishReason CheckStop(int32_t token, int64_t num_generated, const SamplingParams& params,
                       std::span<const int32_t> eos_ids) {
  if (!params.ignore_eos && std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end()) {
    return FinishReason::kEos;
  }
  const std::vector<int32_t>& stops = params.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    return FinishReason::kStopToken;
  }
  if (num_generated >= params.max_new_tokens) return FinishReason::kMaxTokens;
  return FinishReason::kNone;
}

}  // namespace rackserve::sampling
