#include "kernels/cpu/silu_mul.h"

#include <cmath>
#include <string_view>

#include "kernels/cpu/internal/argument_checks.h"
#include "kernels/cpu/internal/multiversion.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {
namespace {

// Rows in increasing order, each read before it is written: safe when out == gate_up, since
// row i of out ends at (i + 1) f <= 2 i f, where row i of gate_up starts, for every i >= 1.
RS_CPU_MULTIVERSION void SiluMulRows(const float* gate_up, int64_t m, int64_t f, float* out) {
  for (int64_t i = 0; i < m; ++i) {
    const float* gate = gate_up + 2 * i * f;
    const float* up = gate + f;
    float* row = out + i * f;
    for (int64_t j = 0; j < f; ++j) {
      const float g = gate[j];
      row[j] = g / (1.0f + std::exp(-g)) * up[j];
    }
  }
}

}  // namespace

absl::Status SiluMul(const float* gate_up, int64_t m, int64_t f, float* out) {
  constexpr std::string_view kOp = "SiluMul";
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "m", m));
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "f", f));
  if (m == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "gate_up", gate_up));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "out", out));
  if (out != gate_up) {
    RS_RETURN_IF_ERROR(
        internal::CheckDisjoint(kOp, "out", out, m * f, "gate_up", gate_up, 2 * m * f));
  }
  SiluMulRows(gate_up, m, f, out);
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
