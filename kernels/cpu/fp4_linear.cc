#include "kernels/cpu/fp4_linear.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/internal/argument_checks.h"
#include "kernels/cpu/internal/multiversion.h"
#include "kernels/cpu/internal/panel_dot.h"
#include "runtime/base/status_macros.h"
#include "runtime/numerics/minifloat.h"

namespace rackserve::kernels::cpu {
namespace {

using internal::kPanelRows;

// Columns of W decoded per panel: a multiple of both block sizes (16, 32); 4 x 512 floats is
// 8 KiB, which stays in L1 next to the x rows it meets.
constexpr int64_t kPanelCols = 512;
// Rows of x that meet one decoded panel before the next panel is decoded.
constexpr int64_t kRowBlock = 64;
// Multiply-adds below which a thread's share is not worth a hand-off.
constexpr int64_t kMinFmasPerChunk = 1 << 16;

// kE2m1Pairs[b] = {E2M1 value of the low nibble of b, E2M1 value of the high nibble}.
struct E2m1PairTable {
  alignas(64) float pair[256][2];
};

constexpr E2m1PairTable MakeE2m1PairTable() {
  E2m1PairTable t{};
  for (int b = 0; b < 256; ++b) {
    for (int half = 0; half < 2; ++half) {
      const int code = (b >> (4 * half)) & 0xF;
      const float mag = numerics::kE2m1Magnitudes[code & 0x7];
      t.pair[b][half] = (code & 0x8) ? -mag : mag;
    }
  }
  return t;
}

constexpr E2m1PairTable kE2m1Pairs = MakeE2m1PairTable();

using ScaleTable = std::array<float, 256>;

// Value of every scale byte of `format` (E4M3 for NVFP4, E8M0 for MXFP4).
const ScaleTable& ScaleTableFor(numerics::Fp4Format format) {
  static const ScaleTable kE4m3 = [] {
    ScaleTable t;
    for (int b = 0; b < 256; ++b) t[b] = numerics::E4m3ToFloat(static_cast<uint8_t>(b));
    return t;
  }();
  static const ScaleTable kE8m0 = [] {
    ScaleTable t;
    for (int b = 0; b < 256; ++b) t[b] = numerics::E8m0ToFloat(static_cast<uint8_t>(b));
    return t;
  }();
  switch (format) {
    case numerics::Fp4Format::kNvfp4:
      return kE4m3;
    case numerics::Fp4Format::kMxfp4:
      return kE8m0;
  }
  return kE4m3;  // unreachable: every enumerator is handled above
}

// Decodes W[row, k0 : k0 + cols] into out[cols]. k0 and cols are multiples of kBlock.
template <int kBlock>
[[gnu::always_inline]] inline void DecodeRowSpan(const numerics::Fp4Matrix& w,
                                                 const ScaleTable& scale_table, int64_t row,
                                                 int64_t k0, int64_t cols, float* out) {
  const uint8_t* packed = w.packed.data() + row * (w.cols / 2) + k0 / 2;
  const uint8_t* scales = w.scales.data() + row * (w.cols / kBlock) + k0 / kBlock;
  for (int64_t b = 0; b < cols / kBlock; ++b) {
    float* block = out + b * kBlock;
    const uint8_t* bytes = packed + b * (kBlock / 2);
    const float scale = scale_table[scales[b]] * w.tensor_scale;
    for (int j = 0; j < kBlock / 2; ++j) {
      const float* pair = kE2m1Pairs.pair[bytes[j]];
      block[2 * j] = pair[0] * scale;
      block[2 * j + 1] = pair[1] * scale;
    }
  }
}

// y[:, 4 * tile_begin : 4 * tile_end] for all m rows (a tile is kPanelRows rows of W). Inlined
// into the multiversioned entry points below (Clang cannot multiversion a template).
template <int kBlock>
[[gnu::always_inline]] inline void Fp4LinearTiles(const numerics::Fp4Matrix& w,
                                                  const ScaleTable& scale_table, const float* x,
                                                  int64_t m, float* y, int64_t tile_begin,
                                                  int64_t tile_end) {
  const int64_t n = w.rows;
  const int64_t k = w.cols;
  alignas(64) float panel[kPanelRows][kPanelCols];
  float sums[kRowBlock * kPanelRows];
  for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, m - i0);
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t n0 = tile * kPanelRows;
      const int64_t panel_rows = std::min<int64_t>(kPanelRows, n - n0);
      const float* panel_row[kPanelRows];
      for (int r = 0; r < kPanelRows; ++r) panel_row[r] = panel[r < panel_rows ? r : 0];
      std::fill(sums, sums + rows * kPanelRows, 0.0f);
      for (int64_t k0 = 0; k0 < k; k0 += kPanelCols) {
        const int64_t cols = std::min(kPanelCols, k - k0);
        for (int64_t r = 0; r < panel_rows; ++r) {
          DecodeRowSpan<kBlock>(w, scale_table, n0 + r, k0, cols, panel[r]);
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

RS_CPU_MULTIVERSION void Nvfp4LinearTiles(const numerics::Fp4Matrix& w,
                                          const ScaleTable& scale_table, const float* x, int64_t m,
                                          float* y, int64_t tile_begin, int64_t tile_end) {
  Fp4LinearTiles<16>(w, scale_table, x, m, y, tile_begin, tile_end);
}

RS_CPU_MULTIVERSION void Mxfp4LinearTiles(const numerics::Fp4Matrix& w,
                                          const ScaleTable& scale_table, const float* x, int64_t m,
                                          float* y, int64_t tile_begin, int64_t tile_end) {
  Fp4LinearTiles<32>(w, scale_table, x, m, y, tile_begin, tile_end);
}

// The O(1) part of numerics::ValidateFp4Matrix: shape, buffer sizes and tensor scale. The block
// scales are not scanned for NaN on every call (the loader validates a matrix once).
absl::Status CheckWeight(const numerics::Fp4Matrix& w) {
  const int64_t block = numerics::Fp4BlockSize(w.format);
  if (w.rows < 0 || w.cols < 0 || w.cols % block != 0 ||
      (w.cols > 0 && w.rows > std::numeric_limits<int64_t>::max() / w.cols)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Fp4Linear: weight w has shape [", w.rows, ", ", w.cols,
        "]; it must be non-negative, not overflow int64, and cols must be a multiple of ", block,
        " (", std::string(numerics::Fp4FormatName(w.format)), ")"));
  }
  const uint64_t packed_bytes = static_cast<uint64_t>(w.rows * (w.cols / 2));
  const uint64_t scale_bytes = static_cast<uint64_t>(w.rows * (w.cols / block));
  if (w.packed.size() != packed_bytes || w.scales.size() != scale_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("Fp4Linear: weight w of shape [", w.rows, ", ", w.cols, "] needs ",
                     packed_bytes, " packed bytes and ", scale_bytes, " scale bytes, has ",
                     w.packed.size(), " and ", w.scales.size()));
  }
  if (!std::isfinite(w.tensor_scale) || w.tensor_scale <= 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat("Fp4Linear: weight w has tensor_scale ",
                                                   w.tensor_scale, ", not finite and positive"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Fp4Linear(const numerics::Fp4Matrix& w, const float* x, int64_t m, float* y,
                       base::ThreadPool* pool) {
  constexpr std::string_view kOp = "Fp4Linear";
  RS_RETURN_IF_ERROR(CheckWeight(w));
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "m", m));
  if (m == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "x", x));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "y", y));
  RS_RETURN_IF_ERROR(internal::CheckDisjoint(kOp, "y", y, m * w.rows, "x", x, m * w.cols));

  const ScaleTable& scale_table = ScaleTableFor(w.format);
  auto run = [&](int64_t tile_begin, int64_t tile_end) {
    switch (w.format) {
      case numerics::Fp4Format::kNvfp4:
        Nvfp4LinearTiles(w, scale_table, x, m, y, tile_begin, tile_end);
        return;
      case numerics::Fp4Format::kMxfp4:
        Mxfp4LinearTiles(w, scale_table, x, m, y, tile_begin, tile_end);
        return;
    }
  };
  const int64_t tiles = (w.rows + kPanelRows - 1) / kPanelRows;
  if (pool == nullptr) {
    run(0, tiles);
  } else {
    const int64_t fmas_per_tile = kPanelRows * m * w.cols;
    pool->ParallelFor(tiles, std::max<int64_t>(1, kMinFmasPerChunk / fmas_per_tile), run);
  }
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
