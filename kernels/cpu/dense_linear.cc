#include "kernels/cpu/dense_linear.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/internal/argument_checks.h"
#include "kernels/cpu/internal/multiversion.h"
#include "kernels/cpu/internal/panel_dot.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {
namespace {

using internal::kPanelRows;

// Columns of W per pass: 4 rows x 512 floats (8 KiB) stay in L1 while they meet the x rows.
constexpr int64_t kPanelCols = 512;
// Rows of x that meet one panel before moving on.
constexpr int64_t kRowBlock = 64;
// Multiply-adds below which a thread's share is not worth a hand-off.
constexpr int64_t kMinFmasPerChunk = 1 << 16;

// y[:, 4 * tile_begin : 4 * tile_end] for all m rows (a tile is kPanelRows rows of W).
RS_CPU_MULTIVERSION void DenseLinearTiles(const float* w, int64_t n, int64_t k, const float* x,
                                          int64_t m, float* y, int64_t tile_begin,
                                          int64_t tile_end) {
  float sums[kRowBlock * kPanelRows];
  alignas(64) float panel[kPanelRows][kPanelCols];
  for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, m - i0);
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t n0 = tile * kPanelRows;
      const int64_t panel_rows = std::min<int64_t>(kPanelRows, n - n0);
      std::fill(sums, sums + rows * kPanelRows, 0.0f);
      for (int64_t k0 = 0; k0 < k; k0 += kPanelCols) {
        const float* panel_row[kPanelRows];
        const int64_t cols = std::min(kPanelCols, k - k0);
        for (int r = 0; r < kPanelRows; ++r) {
          panel_row[r] = w + (n0 + (r < panel_rows ? r : 0)) * k + k0;
        }
        // Once the panel meets more than one pair of x rows, a contiguous copy pays for itself:
        // rows of W lie K floats apart and would compete for the same L1 sets.
        if (rows > 2) {
          for (int r = 0; r < kPanelRows; ++r) {
            std::memcpy(panel[r], panel_row[r], cols * sizeof(float));
            panel_row[r] = panel[r];
          }
        }
        internal::PanelDot(panel_row, x + i0 * k + k0, k, rows, cols, sums);
      }
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t r = 0; r < panel_rows; ++r) {
          y[(i0 + i) * n + n0 + r] = sums[i * kPanelRows + r];
        }
      }
    }
  }
}

}  // namespace

absl::Status DenseLinear(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y,
                         base::ThreadPool* pool) {
  constexpr std::string_view kOp = "DenseLinear";
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "n", n));
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "k", k));
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "m", m));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "w", w));
  if (m == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "x", x));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "y", y));
  RS_RETURN_IF_ERROR(internal::CheckDisjoint(kOp, "y", y, m * n, "x", x, m * k));
  RS_RETURN_IF_ERROR(internal::CheckDisjoint(kOp, "y", y, m * n, "w", w, n * k));

  auto run = [&](int64_t tile_begin, int64_t tile_end) {
    DenseLinearTiles(w, n, k, x, m, y, tile_begin, tile_end);
  };
  const int64_t tiles = (n + kPanelRows - 1) / kPanelRows;
  if (pool == nullptr) {
    run(0, tiles);
  } else {
    const int64_t fmas_per_tile = kPanelRows * m * k;
    pool->ParallelFor(tiles, std::max<int64_t>(1, kMinFmasPerChunk / fmas_per_tile), run);
  }
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
