// Counter-based random numbers for sampling: a pure function of (seed, counter), so a request
// draws the same numbers whatever it is batched with, and a preempted request that recomputes
// draws exactly what it would have drawn. Two rounds of the SplitMix64 finalizer; not for
// cryptography. Thread-safe (no state).
#pragma once

#include <cstdint>

namespace rackserve::sampling {

// 64 well-mixed bits for (seed, counter).
uint64_t CounterHash(uint64_t seed, uint64_t counter);

// Uniform in [0, 1), with 53 random bits, for (seed, counter).
double CounterUniform(uint64_t seed, uint64_t counter);

}  // namespace rackserve::sampling
