// Scalar encodings of the narrow floating-point formats rackserve stores and computes with.
//
//   bf16      1-8-7,  IEEE-like, round-to-nearest-even from float.
//   fp16      1-5-10, IEEE binary16, round-to-nearest-even from float.
//   E4M3 (fn) 1-4-3,  bias 7, no infinities, 0x7F/0xFF are NaN, max finite 448. Encoding
//             saturates to +-448 (the convention of FP4 block scales and FP8 KV caches).
//   E8M0      8-bit unsigned power of two, value 2^(b - 127); 0xFF is NaN (OCP MX scale).
//   E2M1      4-bit FP4, bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa. Magnitudes
//             by code 0..7: {0, 0.5, 1, 1.5, 2, 3, 4, 6}. Encoding rounds to nearest, ties to
//             the even code, and saturates to +-6.
//
// All functions are pure and thread-safe.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace rackserve::numerics {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---- bf16 ----
inline float Bf16ToFloat(uint16_t h) { return BitsToFloat(static_cast<uint32_t>(h) << 16); }

inline uint16_t FloatToBf16(float f) {
  uint32_t u = FloatBits(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x0040);  // keep a quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// ---- fp16 ----
inline float Fp16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0) {
    const float mag = std::ldexp(static_cast<float>(man), -24);
    return sign ? -mag : mag;
  }
  if (exp == 31) return BitsToFloat(sign | 0x7F800000u | (man << 13));
  return BitsToFloat(sign | ((exp + 112) << 23) | (man << 13));
}

inline uint16_t FloatToFp16(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7E00u;
  if (a >= 65520.0f) return sign | 0x7C00u;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {           // subnormal: steps of 2^-24
    const float q = std::nearbyint(a * std::ldexp(1.0f, 24));
    return sign | static_cast<uint16_t>(q);  // q == 1024 encodes the smallest normal
  }
  int e;
  std::frexp(a, &e);                                // a = m * 2^e, m in [0.5, 1)
  e -= 1;                                           // a = 1.x * 2^e
  float q = std::nearbyint(std::ldexp(a, 10 - e));  // in [1024, 2048]
  if (q == 2048.0f) {
    q = 1024.0f;
    ++e;
  }
  return sign | static_cast<uint16_t>(((e + 15) << 10) | (static_cast<uint32_t>(q) - 1024));
}

// ---- E4M3 (fn) ----
inline constexpr float kE4m3Max = 448.0f;

inline float E4m3ToFloat(uint8_t b) {
  const bool neg = b & 0x80;
  const int exp = (b >> 3) & 0xF;
  const int man = b & 0x7;
  if (exp == 0xF && man == 0x7) return std::nanf("");
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                             : std::ldexp(static_cast<float>(8 + man), exp - 10);
  return neg ? -mag : mag;
}

inline uint8_t FloatToE4m3(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const float a = std::fabs(f);
  if (a >= kE4m3Max) return sign | 0x7E;
  if (a < std::ldexp(1.0f, -6)) {  // subnormal: steps of 2^-9; q == 8 is the smallest normal
    return sign | static_cast<uint8_t>(std::nearbyint(std::ldexp(a, 9)));
  }
  int e;
  std::frexp(a, &e);
  e -= 1;
  float q = std::nearbyint(std::ldexp(a, 3 - e));  // in [8, 16]
  if (q == 16.0f) {
    q = 8.0f;
    ++e;
  }
  return sign | static_cast<uint8_t>(((e + 7) << 3) | (static_cast<int>(q) - 8));
}

// ---- E8M0 ----
inline float E8m0ToFloat(uint8_t b) {
  if (b == 0xFF) return std::nanf("");
  return std::ldexp(1.0f, static_cast<int>(b) - 127);
}

// ---- E2M1 ----
inline constexpr float kE2m1Max = 6.0f;
inline constexpr float kE2m1Magnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

inline float E2m1ToFloat(uint8_t code) {
  const float mag = kE2m1Magnitudes[code & 0x7];
  return (code & 0x8) ? -mag : mag;
}

// Precondition: f is not NaN.
inline uint8_t FloatToE2m1(float f) {
  const float a = std::fabs(f);
  uint8_t code;
  if (a <= 0.25f) {
    code = 0;
  } else if (a < 0.75f) {
    code = 1;
  } else if (a <= 1.25f) {
    code = 2;
  } else if (a < 1.75f) {
    code = 3;
  } else if (a <= 2.5f) {
    code = 4;
  } else if (a < 3.5f) {
    code = 5;
  } else if (a <= 5.0f) {
    code = 6;
  } else {
    code = 7;
  }
  return (code != 0 && std::signbit(f)) ? static_cast<uint8_t>(code | 0x8) : code;
}

}  // namespace rackserve::numerics
