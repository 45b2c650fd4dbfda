// CUDA runtime errors as absl::Status, converted at the boundary with the failing expression,
// file and line (the one place CUDA error codes become rackserve errors).
//
//   RS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(...));
//   RS_CUDA_RETURN_IF_ERROR(cudaGetLastError());  // after every kernel launch
//
// Codes: cudaErrorMemoryAllocation -> RESOURCE_EXHAUSTED; no device / no driver ->
// FAILED_PRECONDITION; an unsupported architecture or launch configuration -> INVALID_ARGUMENT;
// anything else -> INTERNAL.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace rackserve::kernels::cuda {

absl::Status CudaStatus(cudaError_t error, const char* expr, const char* file, int line);

// True when at least one CUDA device is usable (false without a driver or a GPU).
bool CudaDeviceAvailable();

}  // namespace rackserve::kernels::cuda

#define RS_CUDA_RETURN_IF_ERROR(expr)                                                           \
  do {                                                                                          \
    const cudaError_t rs_cuda_error_ = (expr);                                                  \
    if (rs_cuda_error_ != cudaSuccess) {                                                        \
      return ::rackserve::kernels::cuda::CudaStatus(rs_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                                           \
  } while (false)
