// ReplicaRegistry: the ReplicaHosts of this worker, by replica id. Owns them; hosts are only
// added, never removed, so a pointer returned by Find() lives as long as the registry.
// Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/replica_host.h"

namespace rackserve::worker {

class ReplicaRegistry {
 public:
  // ALREADY_EXISTS naming the replica when its id is taken.
  absl::Status Add(std::unique_ptr<ReplicaHost> host);
  // NOT_FOUND naming the replica.
  absl::StatusOr<ReplicaHost*> Find(std::string_view replica_id) const;
  bool Contains(std::string_view replica_id) const;
  std::vector<ReplicaHost*> All() const;

  // Drains every replica; returns the requests still in flight on all of them.
  int64_t DrainAll();
  // Waits until every replica is idle; false on timeout.
  bool WaitIdle(absl::Duration timeout);
  std::vector<ReplicaCounters> Counters() const;

 private:
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<ReplicaHost>> hosts_;  // guarded by mu_
};

}  // namespace rackserve::worker
