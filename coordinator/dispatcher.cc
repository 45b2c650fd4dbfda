#include "coordinator/dispatcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::coordinator {
namespace {
// How often a waiting request re-checks cancellation and its deadline.
constexpr absl::Duration kPoll = absl::Milliseconds(50);
}  // namespace

namespace {

absl::flat_hash_map<std::string, size_t> IndexOf(const std::vector<ReplicaStatus>& replicas) {
  absl::flat_hash_map<std::string, size_t> index;
  for (size_t i = 0; i < replicas.size(); ++i) index.emplace(replicas[i].id, i);
  return index;
}

}  // namespace

Dispatcher::Dispatcher(Registry* registry, std::unique_ptr<RoutingPolicy> policy,
                       int64_t queue_limit)
    : registry_(registry),
      index_(IndexOf(*registry->ReplicasSnapshot())),
      policy_(std::move(policy)),
      queue_(queue_limit),
      outstanding_(index_.size(), 0),
      reserved_(index_.size(), 0),
      refused_(index_.size(), false) {}

std::optional<Lease> Dispatcher::TryPlaceLocked(std::span<const int32_t> prompt, int64_t cost,
                                                std::string_view pinned_replica) {
  const std::shared_ptr<const std::vector<ReplicaStatus>> replicas = registry_->ReplicasSnapshot();
  std::vector<RouteCandidate> candidates;
  candidates.reserve(replicas->size());
  for (size_t i = 0; i < replicas->size(); ++i) {
    const ReplicaStatus& r = (*replicas)[i];
    if (!r.live || r.address.empty()) continue;
    if (!pinned_replica.empty() && r.id != pinned_replica) continue;
    const int64_t credit = refused_[i] ? 0 : r.credit_budget - reserved_[i];
    candidates.push_back({r.id, outstanding_[i], credit});
  }
  const std::optional<std::string> picked = policy_->Pick(candidates, prompt, cost);
  if (!picked.has_value()) return std::nullopt;
  const size_t i = index_.at(*picked);
  const ReplicaStatus& r = (*replicas)[i];
  outstanding_[i] += cost;
  reserved_[i] += cost;
  return Lease{r.id, i, r.address, r.leader_vm, r.leader_worker_id, r.worker_ids, cost};
}

absl::StatusOr<Lease> Dispatcher::Acquire(std::span<const int32_t> prompt, int64_t cost,
                                          const std::function<bool()>& cancelled,
                                          absl::Duration max_wait,
                                          const std::function<double()>& completions_per_second,
                                          std::string_view pinned_replica) {
  const absl::Time deadline = absl::Now() + max_wait;
  if (!pinned_replica.empty()) {
    const std::shared_ptr<const std::vector<ReplicaStatus>> replicas =
        registry_->ReplicasSnapshot();
    const bool live = std::any_of(replicas->begin(), replicas->end(), [&](const ReplicaStatus& r) {
      return r.id == pinned_replica && r.live && !r.address.empty();
    });
    if (!live) {
      return absl::UnavailableError(
          absl::StrCat("replica_id: replica ", std::string(pinned_replica), " is not live"));
    }
  }
  absl::MutexLock lock(&mutex_);
  if (cancelled()) return absl::CancelledError("request cancelled before it was placed");
  if (queue_.size() == 0) {  // nobody waits ahead of it
    if (std::optional<Lease> lease = TryPlaceLocked(prompt, cost, pinned_replica)) {
      return *std::move(lease);
    }
  }
  RS_ASSIGN_OR_RETURN(const uint64_t ticket,
                      queue_.Enqueue(RetryAfter(queue_.size(), completions_per_second())));
  while (true) {
    if (cancelled()) {
      queue_.Remove(ticket);
      changed_.SignalAll();
      return absl::CancelledError("request cancelled while waiting for a replica");
    }
    if (queue_.IsHead(ticket)) {
      if (std::optional<Lease> lease = TryPlaceLocked(prompt, cost, pinned_replica)) {
        queue_.Remove(ticket);
        changed_.SignalAll();
        return *std::move(lease);
      }
    }
    if (absl::Now() >= deadline) {
      queue_.Remove(ticket);
      changed_.SignalAll();
      return absl::UnavailableError(absl::StrCat("no live replica could take a request of ", cost,
                                                 " tokens within ",
                                                 absl::FormatDuration(max_wait)));
    }
    changed_.WaitWithTimeout(&mutex_, kPoll);
  }
}

void Dispatcher::Delivered(const Lease& lease, int64_t tokens) {
  absl::MutexLock lock(&mutex_);
  outstanding_[lease.replica_index] -= tokens;
}

void Dispatcher::Release(const Lease& lease, int64_t remaining) {
  absl::MutexLock lock(&mutex_);
  outstanding_[lease.replica_index] -= remaining;
  reserved_[lease.replica_index] -= lease.cost;
  changed_.SignalAll();
}

void Dispatcher::OnCreditReport(const std::string& replica_id) {
  absl::MutexLock lock(&mutex_);
  auto it = index_.find(replica_id);
  if (it != index_.end()) refused_[it->second] = false;
  changed_.SignalAll();
}

void Dispatcher::OnRefused(const std::string& replica_id) {
  absl::MutexLock lock(&mutex_);
  auto it = index_.find(replica_id);
  if (it != index_.end()) refused_[it->second] = true;
  changed_.SignalAll();
}

void Dispatcher::Wake() {
  absl::MutexLock lock(&mutex_);
  changed_.SignalAll();
}

int64_t Dispatcher::queued() const {
  absl::MutexLock lock(&mutex_);
  return queue_.size();
}

int64_t Dispatcher::outstanding_tokens(const std::string& replica_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = index_.find(replica_id);
  return it == index_.end() ? 0 : outstanding_[it->second];
}

}  // namespace rackserve::coordinator
