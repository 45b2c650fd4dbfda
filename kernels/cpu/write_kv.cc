#include "kernels/cpu/write_kv.h"

#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/internal/argument_checks.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {

absl::Status WriteKv(const PagedKvLayer& cache, const float* k_new, const float* v_new,
                     const int64_t* slots, int64_t tokens) {
  constexpr std::string_view kOp = "WriteKv";
  RS_RETURN_IF_ERROR(ValidatePagedKvLayer(cache, kOp));
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "tokens", tokens));
  if (tokens == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "k_new", k_new));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "v_new", v_new));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "slots", slots));
  const int64_t num_slots = cache.num_slots();
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0 || slots[t] >= num_slots) {
      return absl::InvalidArgumentError(absl::StrCat("WriteKv: token ", t, " has slot ", slots[t],
                                                     ", outside the cache's slots [0, ", num_slots,
                                                     ")"));
    }
  }
  const int64_t stride = cache.slot_stride();
  const size_t bytes = static_cast<size_t>(stride) * sizeof(float);
  for (int64_t t = 0; t < tokens; ++t) {
    std::memcpy(cache.k + slots[t] * stride, k_new + t * stride, bytes);
    std::memcpy(cache.v + slots[t] * stride, v_new + t * stride, bytes);
  }
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
