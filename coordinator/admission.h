// AdmissionQueue: the bounded FIFO of requests waiting for credit. Enqueue past `limit` waiting
// requests fails with RESOURCE_EXHAUSTED carrying a retry-after hint; the queue never grows
// unbounded. Only the head may be dispatched (FIFO fairness).
//
// Not thread-safe: the caller (Dispatcher) serializes calls.
#pragma once

#include <cstdint>
#include <deque>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rackserve::coordinator {

// The retry-after hint for a rejected request: the time the rack needs to complete the queue,
// given its recent completion rate; within [100 ms, 30 s]; 1 s when the rate is unknown (0).
absl::Duration RetryAfter(int64_t queued, double completions_per_second);

// The retry-after hint in a RESOURCE_EXHAUSTED message ("retry after 250 ms"), or 0 when absent.
int64_t RetryAfterMillisFromMessage(std::string_view message);

class AdmissionQueue {
 public:
  explicit AdmissionQueue(int64_t limit) : limit_(limit) {}

  // A ticket for a new waiter, or RESOURCE_EXHAUSTED "admission queue full (<limit> requests
  // waiting); retry after <ms> ms" (limit 0, no queue: "no replica has credit now and the
  // admission queue is off (limit 0); retry after <ms> ms").
  absl::StatusOr<uint64_t> Enqueue(absl::Duration retry_after);
  bool IsHead(uint64_t ticket) const { return !waiting_.empty() && waiting_.front() == ticket; }
  void Remove(uint64_t ticket);  // no-op when absent
  int64_t size() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t limit() const { return limit_; }

 private:
  const int64_t limit_;
  uint64_t next_ticket_ = 1;
  std::deque<uint64_t> waiting_;
};

}  // namespace rackserve::coordinator
