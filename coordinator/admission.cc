#include "coordinator/admission.h"

#include <algorithm>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rackserve::coordinator {
namespace {
constexpr std::string_view kRetryPrefix = "retry after ";
}  // namespace

absl::Duration RetryAfter(int64_t queued, double completions_per_second) {
  if (completions_per_second <= 0) return absl::Seconds(1);
  const absl::Duration d = absl::Seconds(static_cast<double>(queued) / completions_per_second);
  return std::clamp(d, absl::Milliseconds(100), absl::Seconds(30));
}

int64_t RetryAfterMillisFromMessage(std::string_view message) {
  const size_t at = message.find(kRetryPrefix);
  if (at == std::string_view::npos) return 0;
  std::string_view rest = message.substr(at + kRetryPrefix.size());
  rest = rest.substr(0, rest.find(' '));
  int64_t ms = 0;
  return absl::SimpleAtoi(std::string(rest), &ms) ? ms : 0;
}

absl::StatusOr<uint64_t> AdmissionQueue::Enqueue(absl::Duration retry_after) {
  if (limit_ == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no replica has credit now and the admission queue is off (limit 0); ",
                     std::string(kRetryPrefix), absl::ToInt64Milliseconds(retry_after), " ms"));
  }
  if (size() >= limit_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("admission queue full (", limit_, " requests waiting); ",
                     std::string(kRetryPrefix), absl::ToInt64Milliseconds(retry_after), " ms"));
  }
  waiting_.push_back(next_ticket_);
  return next_ticket_++;
}

void AdmissionQueue::Remove(uint64_t ticket) {
  auto it = std::find(waiting_.begin(), waiting_.end(), ticket);
  if (it != waiting_.end()) waiting_.erase(it);
}

}  // namespace rackserve::coordinator
