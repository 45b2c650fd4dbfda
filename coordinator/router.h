// Routing: which replica runs a request. The policy is a small interface so it can be swapped;
// LeastOutstandingPolicy is the default: among replicas whose credit covers the request, the one
// with the least outstanding work in tokens (prompt + max_new_tokens - delivered, summed over its
// in-flight requests); ties go to the replica that last served the same prompt prefix (a hash of
// the first kAffinityPrefixTokens tokens), then to the first in topology order.
//
// Not thread-safe: the caller (Dispatcher) serializes calls.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace rackserve::coordinator {

struct RouteCandidate {
  std::string replica_id;
  int64_t outstanding_tokens = 0;  // work already on the replica
  int64_t available_credit = 0;    // tokens it can still admit
};

class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;
  // The replica for a request costing `cost` tokens, or nullopt when none can take it now.
  // `candidates` are live replicas in topology order.
  virtual std::optional<std::string> Pick(const std::vector<RouteCandidate>& candidates,
                                          std::span<const int32_t> prompt, int64_t cost) = 0;
};

inline constexpr int kAffinityPrefixTokens = 64;

class LeastOutstandingPolicy : public RoutingPolicy {
 public:
  std::optional<std::string> Pick(const std::vector<RouteCandidate>& candidates,
                                  std::span<const int32_t> prompt, int64_t cost) override;

 private:
  static constexpr size_t kMaxAffinityEntries = 1 << 16;     // the map is cleared when full
  absl::flat_hash_map<uint64_t, std::string> last_replica_;  // prefix hash -> replica
};

}  // namespace rackserve::coordinator
