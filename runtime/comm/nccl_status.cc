#include "runtime/comm/nccl_status.h"

#include "absl/strings/str_cat.h"

namespace rackserve::comm {

absl::Status NcclStatus(ncclResult_t result, const char* expr, const char* file, int line) {
  const std::string message =
      absl::StrCat(expr, " failed at ", file, ":", line, ": ", ncclGetErrorString(result),
                   " (ncclResult_t ", static_cast<int>(result), ")");
  switch (result) {
    case ncclSuccess:
      return absl::OkStatus();
    case ncclSystemError:
    case ncclRemoteError:
      return absl::UnavailableError(message);
    case ncclInvalidArgument:
      return absl::InvalidArgumentError(message);
    case ncclInvalidUsage:
      return absl::FailedPreconditionError(message);
    case ncclInProgress:
      return absl::DeadlineExceededError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace rackserve::comm
