#include "kernels/cpu/rms_norm.h"

#include <cmath>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/internal/argument_checks.h"
#include "kernels/cpu/internal/multiversion.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {
namespace {

absl::Status CheckArguments(std::string_view op, const float* x, const float* weight, int64_t m,
                            int64_t hidden, float eps, const float* out) {
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(op, "m", m));
  RS_RETURN_IF_ERROR(internal::CheckPositive(op, "hidden", hidden));
  if (!std::isfinite(eps) || eps < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(op), ": argument eps must be finite and >= 0, got ", eps));
  }
  RS_RETURN_IF_ERROR(internal::CheckNotNull(op, "weight", weight));
  if (m == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(op, "x", x));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(op, "out", out));
  if (out != x) {
    RS_RETURN_IF_ERROR(internal::CheckDisjoint(op, "out", out, m * hidden, "x", x, m * hidden));
  }
  return absl::OkStatus();
}

// 1 / sqrt(mean(row^2) + eps), the mean accumulated in double.
[[gnu::always_inline]] inline float InverseRms(const float* row, int64_t hidden, float eps) {
  constexpr int kAcc = 4;
  double acc[kAcc] = {};
  int64_t j = 0;
  for (; j + kAcc <= hidden; j += kAcc) {
    for (int l = 0; l < kAcc; ++l) acc[l] += static_cast<double>(row[j + l]) * row[j + l];
  }
  double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; j < hidden; ++j) sum += static_cast<double>(row[j]) * row[j];
  return static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(hidden) + eps));
}

// out[j] = row[j] * inv_rms * weight[j]; out may equal row.
[[gnu::always_inline]] inline void ScaleRow(const float* row, const float* weight, int64_t hidden,
                                            float inv_rms, float* out) {
  for (int64_t j = 0; j < hidden; ++j) out[j] = row[j] * inv_rms * weight[j];
}

RS_CPU_MULTIVERSION void RmsNormRows(const float* x, const float* weight, int64_t m, int64_t hidden,
                                     float eps, float* out) {
  for (int64_t i = 0; i < m; ++i) {
    const float* row = x + i * hidden;
    ScaleRow(row, weight, hidden, InverseRms(row, hidden, eps), out + i * hidden);
  }
}

RS_CPU_MULTIVERSION void AddRmsNormRows(float* residual, const float* x, const float* weight,
                                        int64_t m, int64_t hidden, float eps, float* out) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = residual + i * hidden;
    const float* add = x + i * hidden;
    for (int64_t j = 0; j < hidden; ++j) row[j] += add[j];
    ScaleRow(row, weight, hidden, InverseRms(row, hidden, eps), out + i * hidden);
  }
}

}  // namespace

absl::Status RmsNorm(const float* x, const float* weight, int64_t m, int64_t hidden, float eps,
                     float* out) {
  RS_RETURN_IF_ERROR(CheckArguments("RmsNorm", x, weight, m, hidden, eps, out));
  RmsNormRows(x, weight, m, hidden, eps, out);
  return absl::OkStatus();
}

absl::Status AddRmsNorm(float* residual, const float* x, const float* weight, int64_t m,
                        int64_t hidden, float eps, float* out) {
  constexpr std::string_view kOp = "AddRmsNorm";
  RS_RETURN_IF_ERROR(CheckArguments(kOp, x, weight, m, hidden, eps, out));
  if (m == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "residual", residual));
  RS_RETURN_IF_ERROR(
      internal::CheckDisjoint(kOp, "out", out, m * hidden, "residual", residual, m * hidden));
  AddRmsNormRows(residual, x, weight, m, hidden, eps, out);
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
