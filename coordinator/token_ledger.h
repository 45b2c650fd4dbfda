// TokenLedger: the generated tokens of one request as its client has seen them. Chunks from the
// replica (or, after failover, from the next replica, which resumes at index delivered().size())
// are de-duplicated by index, so the client sees every token exactly once and in order.
//
// A value; not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::coordinator {

class TokenLedger {
 public:
  // The tokens of a chunk starting at `first_index` that the client has not seen yet (possibly
  // none), appended to delivered(). DATA_LOSS naming the indices when the chunk starts past
  // delivered().size() (a gap), INVALID_ARGUMENT when first_index < 0, and DATA_LOSS when an
  // overlapping token differs from the one already delivered.
  absl::StatusOr<std::vector<int32_t>> Accept(int64_t first_index,
                                              std::span<const int32_t> token_ids);
  // Every token delivered so far: the resume_token_ids of a failover.
  const std::vector<int32_t>& delivered() const { return delivered_; }

 private:
  std::vector<int32_t> delivered_;
};

}  // namespace rackserve::coordinator
