#include "kernels/cpu/embedding_gather.h"

#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/internal/argument_checks.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {

absl::Status EmbeddingGather(const float* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                             int64_t tokens, float* out) {
  constexpr std::string_view kOp = "EmbeddingGather";
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "vocab", vocab));
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "hidden", hidden));
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "tokens", tokens));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "table", table));
  if (tokens == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "ids", ids));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "out", out));
  RS_RETURN_IF_ERROR(
      internal::CheckDisjoint(kOp, "out", out, tokens * hidden, "table", table, vocab * hidden));
  for (int64_t t = 0; t < tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("EmbeddingGather: token ", t, " has id ",
                                                     ids[t], ", outside the vocabulary [0, ", vocab,
                                                     ")"));
    }
  }
  for (int64_t t = 0; t < tokens; ++t) {
    std::memcpy(out + t * hidden, table + static_cast<int64_t>(ids[t]) * hidden,
                static_cast<size_t>(hidden) * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
