// ucs_status_t -> absl::Status conversion: the code a caller acts on, and a message naming the
// failing expression, the file and UCX's text.
#include "runtime/comm/ucx_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rackserve::comm {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

absl::Status ReturnsUcxError(ucs_status_t status) {
  RS_UCX_RETURN_IF_ERROR(status);
  return absl::OkStatus();
}

absl::StatusOr<void*> ReturnsRequest(ucs_status_ptr_t ptr) {
  RS_UCX_ASSIGN_REQUEST_OR_RETURN(void* request, ptr);
  return request;
}

TEST(UcxStatusTest, CodesFollowWhatTheCallerShouldDo) {
  EXPECT_EQ(UcxStatusCode(UCS_ERR_CONNECTION_RESET), absl::StatusCode::kUnavailable);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_ENDPOINT_TIMEOUT), absl::StatusCode::kUnavailable);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_UNREACHABLE), absl::StatusCode::kUnavailable);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_TIMED_OUT), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_NO_MEMORY), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_MESSAGE_TRUNCATED), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_CANCELED), absl::StatusCode::kCancelled);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_UNSUPPORTED), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(UcxStatusCode(UCS_ERR_NO_MESSAGE), absl::StatusCode::kInternal);
}

TEST(UcxStatusTest, MacroNamesExpressionFileAndUcxText) {
  EXPECT_TRUE(ReturnsUcxError(UCS_OK).ok());
  const absl::Status s = ReturnsUcxError(UCS_ERR_UNREACHABLE);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("status failed at"), HasSubstr("ucx_status_test.cc:"),
                                 HasSubstr(ucs_status_string(UCS_ERR_UNREACHABLE))));
}

TEST(UcxStatusTest, RequestMacroPassesPointersAndConvertsErrors) {
  int object = 0;
  const absl::StatusOr<void*> request = ReturnsRequest(&object);
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(*request, &object);
  const absl::StatusOr<void*> done = ReturnsRequest(nullptr);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(*done, nullptr);
  const absl::StatusOr<void*> failed = ReturnsRequest(UCS_STATUS_PTR(UCS_ERR_NO_MEMORY));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(failed.status().message(), HasSubstr("ptr failed at"));
}

}  // namespace
}  // namespace rackserve::comm
