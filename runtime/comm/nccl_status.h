// NCCL errors as absl::Status, converted at the boundary with the failing expression, file and
// line (the one place ncclResult_t becomes a rackserve error).
//
//   RS_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
//
// ncclInProgress (a non-blocking communicator still working) is not an error for callers that
// poll; this macro treats only ncclSuccess as success, so use it where ncclInProgress cannot be
// returned. Codes: ncclSystemError / ncclRemoteError (network, a peer failed) -> UNAVAILABLE;
// ncclInvalidArgument -> INVALID_ARGUMENT; ncclInvalidUsage -> FAILED_PRECONDITION;
// ncclInProgress -> DEADLINE_EXCEEDED (still not done); others -> INTERNAL.
#pragma once

#include <nccl.h>

#include "absl/status/status.h"

namespace rackserve::comm {

absl::Status NcclStatus(ncclResult_t result, const char* expr, const char* file, int line);

}  // namespace rackserve::comm

#define RS_NCCL_RETURN_IF_ERROR(expr)                                                   \
  do {                                                                                  \
    const ncclResult_t rs_nccl_result_ = (expr);                                        \
    if (rs_nccl_result_ != ncclSuccess) {                                               \
      return ::rackserve::comm::NcclStatus(rs_nccl_result_, #expr, __FILE__, __LINE__); \
    }                                                                                   \
  } while (false)
