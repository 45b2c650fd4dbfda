#include "coordinator/router.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/types/span.h"

namespace rackserve::coordinator {

std::optional<std::string> LeastOutstandingPolicy::Pick(
    const std::vector<RouteCandidate>& candidates, std::span<const int32_t> prompt, int64_t cost) {
  const auto prefix = prompt.first(std::min<size_t>(prompt.size(), kAffinityPrefixTokens));
  const uint64_t key = absl::HashOf(absl::Span<const int32_t>(prefix.data(), prefix.size()));
  auto affinity = last_replica_.find(key);
  const RouteCandidate* best = nullptr;
  for (const RouteCandidate& c : candidates) {
    if (c.available_credit < cost) continue;
    const bool preferred = affinity != last_replica_.end() && affinity->second == c.replica_id;
    if (best == nullptr || c.outstanding_tokens < best->outstanding_tokens ||
        (c.outstanding_tokens == best->outstanding_tokens && preferred)) {
      best = &c;
    }
  }
  if (best == nullptr) return std::nullopt;
  if (last_replica_.size() >= kMaxAffinityEntries) last_replica_.clear();
  last_replica_[key] = best->replica_id;
  return best->replica_id;
}

}  // namespace rackserve::coordinator
