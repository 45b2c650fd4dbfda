#include "kernels/cpu/internal/argument_checks.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace rackserve::kernels::cpu::internal {

absl::Status CheckNonNegative(std::string_view op, std::string_view arg, int64_t value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(op), ": argument ", std::string(arg), " must be >= 0, got ", value));
}

absl::Status CheckPositive(std::string_view op, std::string_view arg, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(op), ": argument ", std::string(arg), " must be > 0, got ", value));
}

absl::Status CheckNotNull(std::string_view op, std::string_view arg, const void* pointer) {
  if (pointer != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(op), ": argument ", std::string(arg), " is null"));
}

absl::Status CheckDisjoint(std::string_view op, std::string_view a_arg, const float* a,
                           int64_t a_len, std::string_view b_arg, const float* b, int64_t b_len) {
  const auto a_begin = reinterpret_cast<std::uintptr_t>(a);
  const auto b_begin = reinterpret_cast<std::uintptr_t>(b);
  const std::uintptr_t a_end = a_begin + static_cast<std::uintptr_t>(a_len) * sizeof(float);
  const std::uintptr_t b_end = b_begin + static_cast<std::uintptr_t>(b_len) * sizeof(float);
  if (a_len == 0 || b_len == 0 || a_end <= b_begin || b_end <= a_begin) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(std::string(op), ": argument ", std::string(a_arg),
                                                 " overlaps argument ", std::string(b_arg)));
}

}  // namespace rackserve::kernels::cpu::internal
