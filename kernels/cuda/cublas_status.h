// cuBLAS / cuBLASLt errors as absl::Status, converted at the boundary with the failing
// expression, file and line (the one place cublasStatus_t becomes a rackserve error).
//
//   RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(...));
//
// Codes: CUBLAS_STATUS_ALLOC_FAILED -> RESOURCE_EXHAUSTED; NOT_SUPPORTED, INVALID_VALUE,
// ARCH_MISMATCH -> INVALID_ARGUMENT; NOT_INITIALIZED -> FAILED_PRECONDITION; else INTERNAL.
#pragma once

#include <cublas_api.h>

#include "absl/status/status.h"

namespace rackserve::kernels::cuda {

absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line);

}  // namespace rackserve::kernels::cuda

#define RS_CUBLAS_RETURN_IF_ERROR(expr)                                                          \
  do {                                                                                           \
    const cublasStatus_t rs_cublas_status_ = (expr);                                             \
    if (rs_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                            \
      return ::rackserve::kernels::cuda::CublasStatus(rs_cublas_status_, #expr, __FILE__,         \
                                                      __LINE__);                                 \
    }                                                                                            \
  } while (false)
