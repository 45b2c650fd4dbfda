#include "kernels/cpu/rope.h"

#include <cmath>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/internal/argument_checks.h"
#include "kernels/cpu/internal/multiversion.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {
namespace {

// Rotates every head of one token by the angles whose cosines and sines are cos[half], sin[half].
RS_CPU_MULTIVERSION void RotateToken(float* x, int64_t num_heads, int64_t head_dim,
                                     const float* cos, const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    float* first = x + h * head_dim;
    float* second = first + half;
    for (int64_t i = 0; i < half; ++i) {
      const float a = first[i];
      const float b = second[i];
      first[i] = a * cos[i] - b * sin[i];
      second[i] = b * cos[i] + a * sin[i];
    }
  }
}

}  // namespace

absl::Status ApplyRope(float* x, int64_t tokens, int64_t num_heads, int64_t head_dim,
                       const int64_t* positions, const float* inv_freq) {
  constexpr std::string_view kOp = "ApplyRope";
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "tokens", tokens));
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "num_heads", num_heads));
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "head_dim", head_dim));
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ApplyRope: argument head_dim must be even, got ", head_dim));
  }
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "inv_freq", inv_freq));
  if (tokens == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "x", x));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "positions", positions));
  for (int64_t t = 0; t < tokens; ++t) {
    if (positions[t] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ApplyRope: positions[", t, "] must be >= 0, got ", positions[t]));
    }
  }

  const int64_t half = head_dim / 2;
  std::vector<float> cos(half), sin(half);
  for (int64_t t = 0; t < tokens; ++t) {
    const double position = static_cast<double>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const double theta = position * static_cast<double>(inv_freq[i]);
      cos[i] = static_cast<float>(std::cos(theta));
      sin[i] = static_cast<float>(std::sin(theta));
    }
    RotateToken(x + t * num_heads * head_dim, num_heads, head_dim, cos.data(), sin.data());
  }
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
