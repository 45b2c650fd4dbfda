#include "runtime/numerics/fp4_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/numerics/minifloat.h"

namespace rackserve::numerics {
namespace {

// E8M0 exponents a block scale may take (byte 0 .. 254; 255 is NaN).
constexpr int kE8m0MinExp = -127;
constexpr int kE8m0MaxExp = 127;
constexpr int kE8m0Bias = 127;

// Checks rows/cols against the format and returns rows * cols without overflowing.
absl::StatusOr<int64_t> CheckedShape(int64_t rows, int64_t cols, Fp4Format format,
                                     std::string_view name) {
  if (rows < 0 || cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": negative shape [", rows, ", ", cols, "]"));
  }
  const int block = Fp4BlockSize(format);
  if (cols % block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": cols ", cols, " is not a multiple of the ",
                     std::string(Fp4FormatName(format)), " block size ", block));
  }
  if (cols != 0 && rows > std::numeric_limits<int64_t>::max() / cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": shape [", rows, ", ", cols, "] overflows int64"));
  }
  return rows * cols;
}

float AbsMax(std::span<const float> values) {
  float amax = 0.0f;
  for (const float v : values) amax = std::max(amax, std::fabs(v));
  return amax;
}

// Writes the E2M1 codes of `values` / `scale` into packed[0 .. values.size() / 2).
// scale == 0 writes zeros.
void PackBlock(std::span<const float> values, float scale, uint8_t* packed) {
  for (size_t j = 0; j < values.size() / 2; ++j) {
    uint8_t lo = 0, hi = 0;
    if (scale != 0.0f) {
      lo = FloatToE2m1(values[2 * j] / scale);
      hi = FloatToE2m1(values[2 * j + 1] / scale);
    }
    packed[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// MXFP4 block: scale 2^exp with exp = floor(log2(amax)) - 2, so amax / 2^exp lies in [4, 8)
// and saturates to 6 at worst. Returns the E8M0 byte; an all-zero block gets byte 0.
uint8_t QuantizeMxfp4Block(std::span<const float> values, uint8_t* packed) {
  const float amax = AbsMax(values);
  if (amax == 0.0f) {
    PackBlock(values, 0.0f, packed);
    return 0;
  }
  int e;
  std::frexp(amax, &e);  // amax = m * 2^e, m in [0.5, 1): floor(log2(amax)) = e - 1
  const int exp = std::clamp(e - 1 - 2, kE8m0MinExp, kE8m0MaxExp);
  for (size_t j = 0; j < values.size() / 2; ++j) {
    const uint8_t lo = FloatToE2m1(std::ldexp(values[2 * j], -exp));
    const uint8_t hi = FloatToE2m1(std::ldexp(values[2 * j + 1], -exp));
    packed[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
  return static_cast<uint8_t>(exp + kE8m0Bias);
}

}  // namespace

int Fp4BlockSize(Fp4Format format) {
  if (format == Fp4Format::kNvfp4) return 16;
  RS_CHECK(format == Fp4Format::kMxfp4);
  return 32;
}

std::string_view Fp4FormatName(Fp4Format format) {
  if (format == Fp4Format::kNvfp4) return "nvfp4";
  RS_CHECK(format == Fp4Format::kMxfp4);
  return "mxfp4";
}

absl::StatusOr<Fp4Format> ParseFp4Format(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  if (lower == "nvfp4") return Fp4Format::kNvfp4;
  if (lower == "mxfp4") return Fp4Format::kMxfp4;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown FP4 format '", std::string(name), "' (expected nvfp4 or mxfp4)"));
}

float Fp4Matrix::BlockScale(int64_t row, int64_t block) const {
  const uint8_t s = scales[static_cast<size_t>(row * scales_per_row() + block)];
  const float scale = format == Fp4Format::kNvfp4 ? E4m3ToFloat(s) : E8m0ToFloat(s);
  return scale * tensor_scale;
}

absl::StatusOr<Fp4Matrix> QuantizeFp4(std::span<const float> values, int64_t rows, int64_t cols,
                                      Fp4Format format, std::string_view name) {
  RS_ASSIGN_OR_RETURN(const int64_t numel, CheckedShape(rows, cols, format, name));
  if (static_cast<uint64_t>(numel) != values.size()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": shape [", rows, ", ", cols,
                                                   "] needs ", numel, " values, got ",
                                                   values.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(name), ": element [", static_cast<int64_t>(i) / cols, ", ",
                       static_cast<int64_t>(i) % cols, "] is ", values[i], " (not finite)"));
    }
  }

  Fp4Matrix m;
  m.format = format;
  m.rows = rows;
  m.cols = cols;
  const int64_t block = Fp4BlockSize(format);
  m.packed.resize(static_cast<size_t>(numel / 2));
  m.scales.resize(static_cast<size_t>(numel / block));
  if (format == Fp4Format::kNvfp4) {
    // amax so small that amax / 2688 underflows to 0 quantizes every element to 0, as amax == 0.
    const float tensor_scale = AbsMax(values) / (kE2m1Max * kE4m3Max);
    m.tensor_scale = tensor_scale > 0.0f ? tensor_scale : 1.0f;
  }
  // Blocks are consecutive in memory: block b covers values [b * block, (b + 1) * block).
  for (int64_t b = 0; b < numel / block; ++b) {
    const std::span<const float> v =
        values.subspan(static_cast<size_t>(b * block), static_cast<size_t>(block));
    uint8_t* packed = m.packed.data() + b * block / 2;
    if (format == Fp4Format::kNvfp4) {
      const uint8_t s = FloatToE4m3(AbsMax(v) / kE2m1Max / m.tensor_scale);
      m.scales[static_cast<size_t>(b)] = s;
      PackBlock(v, E4m3ToFloat(s) * m.tensor_scale, packed);
    } else {
      m.scales[static_cast<size_t>(b)] = QuantizeMxfp4Block(v, packed);
    }
  }
  return m;
}

void DequantizeFp4Row(const Fp4Matrix& m, int64_t row, std::span<float> out) {
  RS_CHECK(row >= 0 && row < m.rows);
  RS_CHECK(out.size() == static_cast<size_t>(m.cols));
  RS_CHECK(m.packed.size() == static_cast<size_t>(m.rows * m.cols / 2));
  RS_CHECK(m.scales.size() == static_cast<size_t>(m.rows * m.scales_per_row()));
  const int64_t block = Fp4BlockSize(m.format);
  const uint8_t* packed = m.packed.data() + row * m.cols / 2;
  for (int64_t b = 0; b < m.scales_per_row(); ++b) {
    const float scale = m.BlockScale(row, b);
    for (int64_t c = b * block; c < (b + 1) * block; c += 2) {
      const uint8_t byte = packed[c / 2];
      out[static_cast<size_t>(c)] = E2m1ToFloat(byte & 0xF) * scale;
      out[static_cast<size_t>(c + 1)] = E2m1ToFloat(byte >> 4) * scale;
    }
  }
}

void DequantizeFp4(const Fp4Matrix& m, std::span<float> out) {
  RS_CHECK(out.size() == static_cast<size_t>(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) {
    DequantizeFp4Row(m, r,
                     out.subspan(static_cast<size_t>(r * m.cols), static_cast<size_t>(m.cols)));
  }
}

absl::Status ValidateFp4Matrix(const Fp4Matrix& m, std::string_view name) {
  RS_ASSIGN_OR_RETURN(const int64_t numel, CheckedShape(m.rows, m.cols, m.format, name));
  const int64_t block = Fp4BlockSize(m.format);
  if (m.packed.size() != static_cast<uint64_t>(numel / 2)) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": packed has ",
                                                   m.packed.size(), " bytes, shape [", m.rows, ", ",
                                                   m.cols, "] needs ", numel / 2));
  }
  if (m.scales.size() != static_cast<uint64_t>(numel / block)) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": scales has ",
                                                   m.scales.size(), " bytes, shape [", m.rows, ", ",
                                                   m.cols, "] needs ", numel / block));
  }
  if (!std::isfinite(m.tensor_scale) || m.tensor_scale <= 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": tensor_scale ",
                                                   m.tensor_scale, " is not finite and positive"));
  }
  for (size_t i = 0; i < m.scales.size(); ++i) {
    const uint8_t s = m.scales[i];
    if (std::isnan(m.format == Fp4Format::kNvfp4 ? E4m3ToFloat(s) : E8m0ToFloat(s))) {
      const int64_t per_row = m.scales_per_row();
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(name), ": block scale [", static_cast<int64_t>(i) / per_row,
                       ", ", static_cast<int64_t>(i) % per_row, "] is NaN"));
    }
  }
  return absl::OkStatus();
}

}  // namespace rackserve::numerics
