// Dispatcher: admission and routing of requests onto live replicas, blocking the caller while the
// request waits for credit.
//
// Credit: a replica can admit its credit budget (ReplicaStatus::credit_budget: the KV its
// requests may reserve, from its last heartbeat) minus the cost of the requests the dispatcher
// placed there and has not seen released — its own books, current at every placement and
// release, so a request that ends frees its credit at once (no wait for a heartbeat), and
// requests in transit are never admitted twice. A request costs prompt + max_new_tokens -
// delivered tokens. A request is placed on a replica at once when one can take it and nobody is
// waiting; otherwise it waits in a bounded FIFO (AdmissionQueue; only its head is placed, so
// waiting requests are served in arrival order). Past the queue's limit (with limit 0: whenever no
// replica can take it now) Acquire fails with RESOURCE_EXHAUSTED and a retry-after hint.
// Outstanding work per replica (what the routing policy balances) is the sum of its requests'
// remaining cost.
//
// Thread-safe. Keeps `registry`, which must outlive it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/admission.h"
#include "coordinator/registry.h"
#include "coordinator/router.h"

namespace rackserve::coordinator {

// A request's place on a replica, as the registry saw the replica when the lease was issued.
struct Lease {
  std::string replica_id;
  size_t replica_index = 0;  // its position in the topology's replicas
  std::string address;  // the leader worker's WorkerService
  std::string leader_vm;
  std::string leader_worker_id;         // the worker the request is submitted to
  std::vector<std::string> worker_ids;  // every worker running a rank of the replica, leader first
  int64_t cost = 0;                     // tokens charged to the replica's outstanding work
};

class Dispatcher {
 public:
  // The registry's replicas (the topology's, in its order) are fixed from here on.
  Dispatcher(Registry* registry, std::unique_ptr<RoutingPolicy> policy, int64_t queue_limit);

  // Blocks until a live replica with enough credit takes the request. RESOURCE_EXHAUSTED (with
  // "retry after <ms> ms") when it would have to wait and the queue is full; CANCELLED when
  // `cancelled()` (polled every 50 ms and on every Wake, under the dispatcher's lock) turns true;
  // UNAVAILABLE naming the wait when no replica could take it within `max_wait` (real time:
  // waiting is a side effect, unlike the Clock-driven logic). A non-empty `pinned_replica` is the
  // only replica considered: UNAVAILABLE at once, naming it, when it is not live.
  // `completions_per_second` (the rack's recent rate, for the retry-after hint) is asked only
  // when the request has to wait.
  absl::StatusOr<Lease> Acquire(std::span<const int32_t> prompt, int64_t cost,
                                const std::function<bool()>& cancelled, absl::Duration max_wait,
                                const std::function<double()>& completions_per_second,
                                std::string_view pinned_replica = {});
  // `tokens` of the lease's work were delivered.
  void Delivered(const Lease& lease, int64_t tokens);
  // The request left the replica; `remaining` tokens of its cost were not delivered.
  void Release(const Lease& lease, int64_t remaining);
  // A heartbeat refreshed the replica's credit budget; wakes waiting requests.
  void OnCreditReport(const std::string& replica_id);
  // The replica refused a request (it failed or drains): it gets none until its next report.
  void OnRefused(const std::string& replica_id);
  // Wakes waiting requests (a replica came up or went down, a request was cancelled).
  void Wake();

  int64_t queued() const;
  int64_t outstanding_tokens(const std::string& replica_id) const;

 private:
  // Places the request on a replica now (charging its cost), or nullopt.
  std::optional<Lease> TryPlaceLocked(std::span<const int32_t> prompt, int64_t cost,
                                      std::string_view pinned_replica)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  Registry* registry_;
  // Each replica's index: its position in the topology and in the registry's snapshots.
  const absl::flat_hash_map<std::string, size_t> index_;
  mutable absl::Mutex mutex_;
  absl::CondVar changed_;
  std::unique_ptr<RoutingPolicy> policy_ ABSL_GUARDED_BY(mutex_);
  AdmissionQueue queue_ ABSL_GUARDED_BY(mutex_);
  // By replica index: outstanding work (cost less the tokens delivered), the cost of the requests
  // placed there and not released, and whether it refused a request since its last report.
  std::vector<int64_t> outstanding_ ABSL_GUARDED_BY(mutex_);
  std::vector<int64_t> reserved_ ABSL_GUARDED_BY(mutex_);
  std::vector<bool> refused_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace rackserve::coordinator
