// UCX errors as absl::Status, converted at the boundary with the failing expression, file and
// line (the one place ucs_status_t becomes a rackserve error).
//
//   RS_UCX_RETURN_IF_ERROR(ucp_worker_create(context, &params, &worker));
//   RS_UCX_ASSIGN_REQUEST_OR_RETURN(void* request, ucp_tag_send_nbx(ep, ...));
//
// Codes: a dead, unreachable or disconnected peer -> UNAVAILABLE; UCS_ERR_TIMED_OUT ->
// DEADLINE_EXCEEDED; out of memory or resources -> RESOURCE_EXHAUSTED; a bad parameter, address
// or a truncated message -> INVALID_ARGUMENT; UCS_ERR_CANCELED -> CANCELLED; an unsupported
// feature or missing device -> FAILED_PRECONDITION; anything else -> INTERNAL.
#pragma once

#include <ucs/type/status.h>

#include "absl/status/status.h"
#include "runtime/base/status_macros.h"

namespace rackserve::comm {

// `status` (not UCS_OK) as an absl::Status whose message names expr, file, line and UCX's text.
absl::Status UcxStatus(ucs_status_t status, const char* expr, const char* file, int line);

// The absl code UcxStatus uses for `status`.
absl::StatusCode UcxStatusCode(ucs_status_t status);

}  // namespace rackserve::comm

#define RS_UCX_RETURN_IF_ERROR(expr)                                                  \
  do {                                                                                \
    const ucs_status_t rs_ucx_status_ = (expr);                                       \
    if (rs_ucx_status_ != UCS_OK) {                                                   \
      return ::rackserve::comm::UcxStatus(rs_ucx_status_, #expr, __FILE__, __LINE__); \
    }                                                                                 \
  } while (false)

// For calls returning ucs_status_ptr_t: returns the error, else assigns the request pointer
// (nullptr when the operation completed at once) to lhs.
#define RS_UCX_ASSIGN_REQUEST_OR_RETURN(lhs, expr) \
  RS_UCX_ASSIGN_REQUEST_OR_RETURN_IMPL_(RS_STATUS_CONCAT_(rs_ucx_ptr_, __LINE__), lhs, expr)

#define RS_UCX_ASSIGN_REQUEST_OR_RETURN_IMPL_(ptr, lhs, expr)                            \
  const ucs_status_ptr_t ptr = (expr);                                                   \
  if (UCS_PTR_IS_ERR(ptr)) {                                                             \
    return ::rackserve::comm::UcxStatus(UCS_PTR_STATUS(ptr), #expr, __FILE__, __LINE__); \
  }                                                                                      \
  lhs = ptr
