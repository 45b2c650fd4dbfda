#include "worker/replica_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace rackserve::worker {

absl::Status ReplicaRegistry::Add(std::unique_ptr<ReplicaHost> host) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string id = host->replica_id();
  if (!hosts_.try_emplace(id, std::move(host)).second) {
    return absl::AlreadyExistsError(absl::StrCat("replica '", id, "' is already on this worker"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReplicaHost*> ReplicaRegistry::Find(std::string_view replica_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = hosts_.find(std::string(replica_id));
  if (it == hosts_.end()) {
    return absl::NotFoundError(
        absl::StrCat("replica_id '", std::string(replica_id), "' is not on this worker"));
  }
  return it->second.get();
}

bool ReplicaRegistry::Contains(std::string_view replica_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return hosts_.contains(std::string(replica_id));
}

std::vector<ReplicaHost*> ReplicaRegistry::All() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ReplicaHost*> all;
  for (const auto& [id, host] : hosts_) all.push_back(host.get());
  std::sort(all.begin(), all.end(), [](const ReplicaHost* a, const ReplicaHost* b) {
    return a->replica_id() < b->replica_id();
  });
  return all;
}

int64_t ReplicaRegistry::DrainAll() {
  int64_t left = 0;
  for (ReplicaHost* host : All()) {
    host->Drain();
    left += host->requests_in_flight();
  }
  return left;
}

bool ReplicaRegistry::WaitIdle(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (ReplicaHost* host : All()) {
    if (!host->WaitIdle(std::max(deadline - absl::Now(), absl::ZeroDuration()))) return false;
  }
  return true;
}

std::vector<ReplicaCounters> ReplicaRegistry::Counters() const {
  std::vector<ReplicaCounters> all;
  for (const ReplicaHost* host : All()) all.push_back(host->counters());
  return all;
}

}  // namespace rackserve::worker
