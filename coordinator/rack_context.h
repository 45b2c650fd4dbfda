// RackContext: the coordinator's shared parts, as the services see them. Not owned: whoever
// builds the services (coordinator_main, tests) owns the parts and keeps them alive longer.
#pragma once

#include "coordinator/clock.h"
#include "coordinator/dispatcher.h"
#include "coordinator/latency_histogram.h"
#include "coordinator/registry.h"
#include "coordinator/throughput.h"
#include "coordinator/topology.h"

namespace rackserve::coordinator {

struct RackContext {
  const Topology* topology = nullptr;
  Registry* registry = nullptr;
  Dispatcher* dispatcher = nullptr;
  RackThroughput* throughput = nullptr;
  const Clock* clock = nullptr;
  RequestLatency* latency = nullptr;  // TTFT / TPOT of finished requests; may be null
};

// Where each replica's tokens are attributed in throughput figures (leader VM, all devices).
std::vector<ReplicaPlacement> PlacementsOf(const Topology& topology);

}  // namespace rackserve::coordinator
