#include "coordinator/rack_context.h"

#include "absl/strings/str_cat.h"

namespace rackserve::coordinator {

std::vector<ReplicaPlacement> PlacementsOf(const Topology& topology) {
  std::vector<ReplicaPlacement> out;
  for (const ReplicaSpec& replica : topology.replicas()) {
    ReplicaPlacement p{replica.id, replica.ranks.front().vm, {}};
    for (const RankSpec& rank : replica.ranks) {
      p.devices.push_back(absl::StrCat(rank.vm, "/", rank.device));
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace rackserve::coordinator
