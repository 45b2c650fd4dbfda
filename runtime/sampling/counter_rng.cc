#include "runtime/sampling/counter_rng.h"

namespace rackserve::sampling {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// The SplitMix64 output function: a bijection on 64 bits with full avalanche.
uint64_t Mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t CounterHash(uint64_t seed, uint64_t counter) {
  return Mix(Mix(seed + kGolden) ^ (counter * kGolden + kGolden));
}

double CounterUniform(uint64_t seed, uint64_t counter) {
  return static_cast<double>(CounterHash(seed, counter) >> 11) * 0x1.0p-53;
}

}  // namespace rackserve::sampling
