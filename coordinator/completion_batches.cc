#include "coordinator/completion_batches.h"

#include <utility>

namespace rackserve::coordinator {

std::vector<v1::CompletionBatch> PackCompletions(std::deque<v1::Completion> completions,
                                                 size_t max_bytes) {
  std::vector<v1::CompletionBatch> batches;
  size_t bytes = 0;
  for (v1::Completion& completion : completions) {
    const size_t size = completion.ByteSizeLong();
    if (batches.empty() || (batches.back().completions_size() > 0 && bytes + size > max_bytes)) {
      batches.emplace_back();
      bytes = 0;
    }
    *batches.back().add_completions() = std::move(completion);
    bytes += size;
  }
  return batches;
}

}  // namespace rackserve::coordinator
