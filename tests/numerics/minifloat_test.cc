// Checks the narrow-float encoders and decoders of minifloat.h against references computed
// independently in double arithmetic: exhaustive decodes, round trips of every code, ties and
// saturation, and fresh random inputs.
#include "runtime/numerics/minifloat.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

namespace rackserve::numerics {
namespace {

// ---- independent references (double arithmetic from the bit fields) ----

double RefE4m3(uint8_t b) {
  const int e = (b >> 3) & 0xF;
  const int m = b & 0x7;
  if (e == 0xF && m == 0x7) return std::numeric_limits<double>::quiet_NaN();
  const double mag =
      e == 0 ? (m / 8.0) * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return (b & 0x80) ? -mag : mag;
}

double RefFp16(uint16_t h) {
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  double mag;
  if (e == 0) {
    mag = m * std::pow(2.0, -24);
  } else if (e == 31) {
    mag =
        m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    mag = (1.0 + m / 1024.0) * std::pow(2.0, e - 15);
  }
  return (h & 0x8000) ? -mag : mag;
}

double RefBf16(uint16_t h) {
  const int e = (h >> 7) & 0xFF;
  const int m = h & 0x7F;
  double mag;
  if (e == 0) {
    mag = m * std::pow(2.0, -133);
  } else if (e == 255) {
    mag =
        m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    mag = (1.0 + m / 128.0) * std::pow(2.0, e - 127);
  }
  return (h & 0x8000) ? -mag : mag;
}

// Index of the value in `grid` (ascending magnitudes, index == code) nearest to a >= 0, ties
// to the even index; values above grid.back() give the last index.
int NearestEven(const std::vector<double>& grid, double a) {
  const auto it = std::lower_bound(grid.begin(), grid.end(), a);
  if (it == grid.end()) return static_cast<int>(grid.size()) - 1;
  const int hi = static_cast<int>(it - grid.begin());
  if (grid[hi] == a || hi == 0) return hi;
  const int lo = hi - 1;
  const double dlo = a - grid[lo], dhi = grid[hi] - a;
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return lo % 2 == 0 ? lo : hi;
}

std::vector<double> E4m3Grid() {  // codes 0x00..0x7E
  std::vector<double> g;
  for (int b = 0; b <= 0x7E; ++b) g.push_back(RefE4m3(static_cast<uint8_t>(b)));
  return g;
}

uint8_t RefFloatToE4m3(float f) {
  static const std::vector<double> grid = E4m3Grid();
  const double a = std::fabs(static_cast<double>(f));
  const int code = a >= 448.0 ? 0x7E : NearestEven(grid, a);
  return static_cast<uint8_t>(code | (std::signbit(f) ? 0x80 : 0));
}

uint8_t RefFloatToE2m1(float f) {
  static const std::vector<double> grid = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  const double a = std::fabs(static_cast<double>(f));
  const int code = a >= 6.0 ? 7 : NearestEven(grid, a);
  return static_cast<uint8_t>(code != 0 && std::signbit(f) ? code | 0x8 : code);
}

std::vector<double> Fp16Grid() {  // codes 0x0000..0x7BFF
  std::vector<double> g;
  for (int h = 0; h <= 0x7BFF; ++h) g.push_back(RefFp16(static_cast<uint16_t>(h)));
  return g;
}

uint16_t RefFloatToFp16(float f) {
  static const std::vector<double> grid = Fp16Grid();
  const double a = std::fabs(static_cast<double>(f));
  // 65504 is the largest finite value; its half-ulp is 16, and the tie rounds to even (inf).
  const int code = a >= 65520.0 ? 0x7C00 : NearestEven(grid, a);
  return static_cast<uint16_t>(code | (std::signbit(f) ? 0x8000 : 0));
}

uint16_t RefFloatToBf16(float f) {
  const uint16_t trunc = static_cast<uint16_t>((FloatBits(f) >> 16) & 0x7FFF);
  const double a = std::fabs(static_cast<double>(f));
  const double lo = RefBf16(trunc);
  // The code above the largest finite one is infinity, which RNE treats as 2^128.
  const double hi = trunc + 1 == 0x7F80 ? std::pow(2.0, 128) : RefBf16(trunc + 1);
  uint16_t code;
  if (a - lo < hi - a) {
    code = trunc;
  } else if (hi - a < a - lo) {
    code = static_cast<uint16_t>(trunc + 1);
  } else {
    code = static_cast<uint16_t>(trunc % 2 == 0 ? trunc : trunc + 1);
  }
  return static_cast<uint16_t>(code | (std::signbit(f) ? 0x8000 : 0));
}

uint32_t TestSeed() {
  const uint32_t seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  return seed;
}

// ---- E4M3 ----

TEST(E4m3Test, EveryCodeDecodesAndReencodesToItself) {
  for (int b = 0; b < 256; ++b) {
    const uint8_t code = static_cast<uint8_t>(b);
    const double ref = RefE4m3(code);
    const float got = E4m3ToFloat(code);
    SCOPED_TRACE(b);
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(got));
      EXPECT_TRUE(code == 0x7F || code == 0xFF);
      continue;
    }
    EXPECT_EQ(static_cast<double>(got), ref);
    EXPECT_EQ(FloatToE4m3(got), code);
  }
  EXPECT_EQ(E4m3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(E4m3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(E4m3ToFloat(0x08), std::ldexp(1.0f, -6));
}

TEST(E4m3Test, MidpointsRoundToEvenCode) {
  for (int b = 0; b < 0x7E; ++b) {
    const double lo = RefE4m3(static_cast<uint8_t>(b));
    const double hi = RefE4m3(static_cast<uint8_t>(b + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // exact: 5 significant bits
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
    const uint8_t even = static_cast<uint8_t>(b % 2 == 0 ? b : b + 1);
    EXPECT_EQ(FloatToE4m3(mid), even) << "midpoint " << mid;
    EXPECT_EQ(FloatToE4m3(-mid), even | 0x80) << "midpoint " << -mid;
  }
  EXPECT_EQ(FloatToE4m3(1.0625f), 0x38);  // between 1 (0x38) and 1.125 (0x39)
  EXPECT_EQ(FloatToE4m3(1.1875f), 0x3A);  // between 1.125 (0x39) and 1.25 (0x3A)
}

TEST(E4m3Test, SaturatesAndKeepsNan) {
  EXPECT_EQ(FloatToE4m3(448.0f), 0x7E);
  EXPECT_EQ(FloatToE4m3(460.0f), 0x7E);
  EXPECT_EQ(FloatToE4m3(1e30f), 0x7E);
  EXPECT_EQ(FloatToE4m3(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(FloatToE4m3(-1000.0f), 0xFE);
  EXPECT_EQ(FloatToE4m3(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_TRUE(std::isnan(E4m3ToFloat(FloatToE4m3(std::nanf("")))));
  EXPECT_EQ(FloatToE4m3(std::ldexp(1.0f, -11)), 0x00);  // below half the smallest step
  EXPECT_EQ(FloatToE4m3(std::ldexp(1.0f, -10)), 0x00);  // tie with 0: even
  EXPECT_EQ(FloatToE4m3(std::ldexp(1.5f, -10)), 0x01);
  EXPECT_EQ(FloatToE4m3(-std::ldexp(1.0f, -12)), 0x80);  // -0
}

TEST(E4m3Test, RandomValuesMatchReference) {
  std::mt19937 rng(TestSeed());
  std::uniform_real_distribution<float> log2mag(-12.0f, 10.0f);
  for (int i = 0; i < 200000; ++i) {
    const float f = (i % 2 ? -1.0f : 1.0f) * std::exp2(log2mag(rng));
    ASSERT_EQ(FloatToE4m3(f), RefFloatToE4m3(f)) << "value " << f;
  }
}

// ---- E2M1 ----

TEST(E2m1Test, DecodesAllCodes) {
  const float expected[16] = {0,     0.5f,  1,  1.5f,  2,  3,  4,  6,
                              -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(E2m1ToFloat(static_cast<uint8_t>(c)), expected[c]) << c;
    if (c != 8) {  // -0 encodes as +0
      EXPECT_EQ(FloatToE2m1(expected[c]), c) << c;
    }
  }
}

TEST(E2m1Test, TiesRoundToEvenCodeAndSaturate) {
  struct Case {
    float in;
    float out;
  };
  const Case cases[] = {{0.25f, 0.0f},  {0.75f, 1.0f}, {1.25f, 1.0f}, {1.75f, 2.0f},
                        {2.5f, 2.0f},   {3.5f, 4.0f},  {5.0f, 4.0f},  {7.0f, 6.0f},
                        {100.0f, 6.0f}, {0.2f, 0.0f},  {0.3f, 0.5f},  {5.1f, 6.0f}};
  for (const Case& c : cases) {
    EXPECT_EQ(E2m1ToFloat(FloatToE2m1(c.in)), c.out) << c.in;
    EXPECT_EQ(E2m1ToFloat(FloatToE2m1(-c.in)), -c.out) << -c.in;
  }
  EXPECT_EQ(FloatToE2m1(std::numeric_limits<float>::infinity()), 0x7);
  EXPECT_EQ(FloatToE2m1(-std::numeric_limits<float>::infinity()), 0xF);
  EXPECT_EQ(FloatToE2m1(-0.1f), 0x0);  // rounds to zero: no negative zero code
}

TEST(E2m1Test, RandomValuesMatchReference) {
  std::mt19937 rng(TestSeed());
  std::uniform_real_distribution<float> dist(-8.0f, 8.0f);
  for (int i = 0; i < 100000; ++i) {
    const float f = dist(rng);
    ASSERT_EQ(FloatToE2m1(f), RefFloatToE2m1(f)) << "value " << f;
  }
}

// ---- bf16 ----

TEST(Bf16Test, EveryCodeDecodesAndRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t code = static_cast<uint16_t>(h);
    const double ref = RefBf16(code);
    const float got = Bf16ToFloat(code);
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << h;
      ASSERT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(got)))) << h;
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), ref) << h;
    ASSERT_EQ(FloatToBf16(got), code) << h;
  }
}

TEST(Bf16Test, MidpointsRoundToEvenCode) {
  for (uint32_t h = 0; h < 0x7F7F; ++h) {
    const double mid =
        (RefBf16(static_cast<uint16_t>(h)) + RefBf16(static_cast<uint16_t>(h + 1))) / 2;
    const float f = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(f), mid);
    const uint16_t even = static_cast<uint16_t>(h % 2 == 0 ? h : h + 1);
    ASSERT_EQ(FloatToBf16(f), even) << "midpoint after code " << h;
    ASSERT_EQ(FloatToBf16(-f), even | 0x8000) << "midpoint after code " << h;
  }
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to infinity
}

TEST(Bf16Test, RandomValuesMatchReference) {
  std::mt19937 rng(TestSeed());
  for (int i = 0; i < 500000; ++i) {
    const float f = BitsToFloat(static_cast<uint32_t>(rng()));
    if (!std::isfinite(f)) continue;
    ASSERT_EQ(FloatToBf16(f), RefFloatToBf16(f)) << "value " << f;
  }
}

// ---- fp16 ----

TEST(Fp16Test, EveryCodeDecodesAndRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t code = static_cast<uint16_t>(h);
    const double ref = RefFp16(code);
    const float got = Fp16ToFloat(code);
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << h;
      ASSERT_TRUE(std::isnan(Fp16ToFloat(FloatToFp16(got)))) << h;
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), ref) << h;
    ASSERT_EQ(FloatToFp16(got), code) << h;
  }
}

TEST(Fp16Test, MidpointsRoundToEvenCodeAndOverflowToInfinity) {
  for (uint32_t h = 0; h < 0x7BFF; ++h) {
    const double mid =
        (RefFp16(static_cast<uint16_t>(h)) + RefFp16(static_cast<uint16_t>(h + 1))) / 2;
    const float f = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(f), mid);
    const uint16_t even = static_cast<uint16_t>(h % 2 == 0 ? h : h + 1);
    ASSERT_EQ(FloatToFp16(f), even) << "midpoint after code " << h;
    ASSERT_EQ(FloatToFp16(-f), even | 0x8000) << "midpoint after code " << h;
  }
  EXPECT_EQ(FloatToFp16(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToFp16(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToFp16(-1e9f), 0xFC00);
  EXPECT_EQ(FloatToFp16(std::ldexp(1.0f, -25)), 0x0000);  // tie with 0: even
  EXPECT_EQ(FloatToFp16(std::ldexp(3.0f, -26)), 0x0001);
}

TEST(Fp16Test, RandomValuesMatchReference) {
  std::mt19937 rng(TestSeed());
  std::uniform_real_distribution<float> log2mag(-27.0f, 17.0f);
  for (int i = 0; i < 300000; ++i) {
    const float f = (i % 2 ? -1.0f : 1.0f) * std::exp2(log2mag(rng));
    ASSERT_EQ(FloatToFp16(f), RefFloatToFp16(f)) << "value " << f;
  }
}

// ---- E8M0 ----

TEST(E8m0Test, DecodesPowersOfTwoAndNan) {
  for (int b = 0; b < 255; ++b) {
    EXPECT_EQ(static_cast<double>(E8m0ToFloat(static_cast<uint8_t>(b))), std::pow(2.0, b - 127))
        << b;
  }
  EXPECT_EQ(E8m0ToFloat(127), 1.0f);
  EXPECT_TRUE(std::isnan(E8m0ToFloat(0xFF)));
}

}  // namespace
}  // namespace rackserve::numerics
