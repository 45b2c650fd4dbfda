#include "kernels/cuda/cublas_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace rackserve::kernels::cuda {

absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line) {
  const std::string message = absl::StrCat(expr, " failed at ", file, ":", line, ": cuBLAS status ",
                                           static_cast<int>(status));
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(message);
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_INVALID_VALUE:
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return absl::InvalidArgumentError(message);
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace rackserve::kernels::cuda
