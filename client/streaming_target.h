// StreamingTarget: where rackctl bench's server / interactive scenarios send their samples — the
// coordinator (one SubmitBatch stream asking for first-token notes) or, as a baseline for the
// coordinator's own cost, the workers' Serve streams directly (direct_workers.h). The bench
// paces Send() on one thread and drains Next() on another.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "rackserve/v1/rack.pb.h"

namespace rackserve::client {

// What happened to one sample.
struct SampleEvent {
  size_t sample = 0;
  bool first_token = false;   // its first token arrived (its end follows)
  bool completed = false;     // otherwise it ended: true when it finished, false when it failed
  int64_t output_tokens = 0;  // at its end
  std::string error;          // why it failed; "" when it finished
  double coordinator_ttft_seconds = 0;  // at its end, when the coordinator measured it
};

class StreamingTarget {
 public:
  virtual ~StreamingTarget() = default;
  // Sends sample `sample`; false once the target can take no more (its stream broke).
  virtual bool Send(size_t sample, const v1::GenerateRequest& request) = 0;
  // No Send() follows.
  virtual void DoneSending() = 0;
  // Blocks for the next event; false once every sent sample ended (or the target broke).
  virtual bool Next(SampleEvent* event) = 0;
  // Why the target broke, or OK; after Next() returned false.
  virtual absl::Status Finish() = 0;
};

}  // namespace rackserve::client
