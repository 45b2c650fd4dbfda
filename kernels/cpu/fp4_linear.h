// Fp4Linear: y = x * W^T for a weight W held in a block-scaled FP4 format (NVFP4 or MXFP4,
// runtime/numerics/fp4_matrix.h), the linear layer of the CPU backend.
//
// Shapes (row-major float32): W [N, K] = w.rows x w.cols, x [m, K], y [m, N].
// W is dequantized on the fly a panel of 4 rows x up to 512 columns at a time (never as a
// whole): each block of packed bytes goes through a 256-entry table (byte -> its two E2M1
// values) and is multiplied by its block scale times the tensor scale; the decoded panel is
// then used against up to 64 rows of x while it sits in L1 (weight-stationary). Work is split
// over output columns N, so y is bitwise the same with or without a pool, for any pool size.
//
// Thread-safety: reentrant; concurrent calls may share w and x. y must not overlap x.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/base/thread_pool.h"
#include "runtime/numerics/fp4_matrix.h"

namespace rackserve::kernels::cpu {

// y[m, N] = x[m, K] * W^T. m == 0 does nothing. pool may be null (runs on the caller).
// INVALID_ARGUMENT when w's buffers do not match its shape and format or its tensor_scale is not
// finite and positive, m < 0, x or y is null, or y overlaps x. The block scales are not scanned
// on every call (numerics::ValidateFp4Matrix does that once, at load): a NaN scale gives NaNs.
absl::Status Fp4Linear(const numerics::Fp4Matrix& w, const float* x, int64_t m, float* y,
                       base::ThreadPool* pool);

}  // namespace rackserve::kernels::cpu
