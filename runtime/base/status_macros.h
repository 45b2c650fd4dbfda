// Status propagation macros (abseil 20220623 has none of its own).
//
//   RS_RETURN_IF_ERROR(expr);            // expr is an absl::Status
//   RS_ASSIGN_OR_RETURN(auto x, expr);   // expr is an absl::StatusOr<T>
//
// Both return the failed status unchanged from the enclosing function, which must return
// absl::Status or absl::StatusOr<U>.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RS_STATUS_CONCAT_INNER_(a, b) a##b
#define RS_STATUS_CONCAT_(a, b) RS_STATUS_CONCAT_INNER_(a, b)

#define RS_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status rs_status_ = (expr);      \
    if (!rs_status_.ok()) return rs_status_; \
  } while (false)

#define RS_ASSIGN_OR_RETURN(lhs, expr) \
  RS_ASSIGN_OR_RETURN_IMPL_(RS_STATUS_CONCAT_(rs_statusor_, __LINE__), lhs, expr)

#define RS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

// Aborts with file and line when a programming invariant is broken. Never for bad input:
// bad input is reported with a Status.
#define RS_CHECK(cond)                                                          \
  do {                                                                          \
    if (!(cond)) ::rackserve::internal::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (false)

namespace rackserve::internal {
[[noreturn]] void CheckFailed(const char* expr, const char* file, int line);
}  // namespace rackserve::internal
