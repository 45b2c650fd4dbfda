// Checking a CPU op against a float64 reference on fresh random inputs.
//
// Every test draws its inputs from SeededRng(): a new seed per run (std::random_device), or
// the one in the environment variable RACKSERVE_TEST_SEED to replay a failure. The seed is
// printed and recorded as the test property "seed". Outputs are compared with the reference
// by the normalized error ||got - want|| / ||want||; outputs are poisoned with NaN before an
// op runs, so a value the op forgot to write fails the comparison.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rackserve::kernels::cpu::reference_check {

inline std::mt19937_64 SeededRng() {
  uint64_t seed;
  if (const char* env = std::getenv("RACKSERVE_TEST_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 0);
  } else {
    std::random_device device;
    seed = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::cout << "[   SEED   ] " << seed << " (replay: RACKSERVE_TEST_SEED=" << seed << ")\n";
  return std::mt19937_64(seed);
}

// n floats uniform in [lo, hi).
inline std::vector<float> RandomFloats(std::mt19937_64& rng, int64_t n, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// n NaNs: the initial content of every output buffer.
inline std::vector<float> Poisoned(int64_t n) {
  return std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
}

// ||got - want|| / ||want|| (||got - want|| when want is all zero). NaN when got has a NaN.
inline double NormalizedError(std::span<const float> got, std::span<const double> want) {
  EXPECT_EQ(got.size(), want.size());
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += want[i] * want[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace rackserve::kernels::cpu::reference_check
