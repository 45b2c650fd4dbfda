#include "kernels/cpu/silu_mul.h"

#include <cmath>
#include <string_view>

#include "kernels/cpu/internal/argument_checks.h"
#include "kernels/cpu/internal/multiversion.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {
namespace {

// Element i of out depends on element i of gate and up only: safe when out is one of them.
RS_CPU_MULTIVERSION void SiluMulElements(const float* gate, const float* up, int64_t n,
                                         float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace

absl::Status SiluMul(const float* gate, const float* up, int64_t m, int64_t f, float* out) {
  constexpr std::string_view kOp = "SiluMul";
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "m", m));
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "f", f));
  if (m == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "gate", gate));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "up", up));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "out", out));
  const int64_t n = m * f;
  if (out != gate) RS_RETURN_IF_ERROR(internal::CheckDisjoint(kOp, "out", out, n, "gate", gate, n));
  if (out != up) RS_RETURN_IF_ERROR(internal::CheckDisjoint(kOp, "out", out, n, "up", up, n));
  SiluMulElements(gate, up, n, out);
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
