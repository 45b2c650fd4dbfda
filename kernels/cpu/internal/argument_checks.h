// Argument checks shared by the CPU ops. Each returns OK or INVALID_ARGUMENT with a message
// "<op>: <what is wrong with argument>" naming the argument and its value, so the caller of
// an op learns which input to fix. Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

namespace rackserve::kernels::cpu::internal {

// `value` >= 0.
absl::Status CheckNonNegative(std::string_view op, std::string_view arg, int64_t value);
// `value` > 0.
absl::Status CheckPositive(std::string_view op, std::string_view arg, int64_t value);
// `pointer` is not null.
absl::Status CheckNotNull(std::string_view op, std::string_view arg, const void* pointer);
// The float ranges [a, a + a_len) and [b, b + b_len) share no element.
absl::Status CheckDisjoint(std::string_view op, std::string_view a_arg, const float* a,
                           int64_t a_len, std::string_view b_arg, const float* b, int64_t b_len);

}  // namespace rackserve::kernels::cpu::internal
