// PackCompletions: SubmitBatchPacked's answer messages — completions, in order, packed into as
// few CompletionBatch messages as a size cap allows.
#pragma once

#include <cstddef>
#include <deque>
#include <vector>

#include "rackserve/v1/rack.pb.h"

namespace rackserve::coordinator {

// Moves `completions`, in order, into CompletionBatch messages holding at most `max_bytes` of
// serialized completions each; a completion larger than max_bytes goes alone in its message.
// No message for no completions.
std::vector<v1::CompletionBatch> PackCompletions(std::deque<v1::Completion> completions,
                                                 size_t max_bytes);

}  // namespace rackserve::coordinator
