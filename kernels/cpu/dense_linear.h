// DenseLinear: y = x * W^T for a float32 weight W (the LM head, or tied embeddings).
//
// Shapes (row-major float32): W [n, k], x [m, k], y [m, n]. Work is split over output
// columns n in panels of 4 rows of W, each used against up to 64 rows of x while in cache;
// y is bitwise the same with or without a pool, for any pool size.
//
// Thread-safety: reentrant; concurrent calls may share w and x. y must not overlap x or w.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/base/thread_pool.h"

namespace rackserve::kernels::cpu {

// y[m, n] = x[m, k] * W[n, k]^T. m == 0 does nothing. pool may be null (runs on the caller).
// INVALID_ARGUMENT when n or k is not positive, m < 0, a pointer is null, or y overlaps x or w.
absl::Status DenseLinear(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y,
                         base::ThreadPool* pool);

}  // namespace rackserve::kernels::cpu
