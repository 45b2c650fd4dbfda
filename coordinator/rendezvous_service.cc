#include "coordinator/rendezvous_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/wire_conversion.h"
#include "runtime/base/status_macros.h"

namespace rackserve::coordinator {
namespace {

// How often a waiting call looks whether its client went away.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(100);

comm::WorldSpec WorldOf(const v1::RendezvousRequest& r) {
  comm::WorldSpec world;
  world.size = r.world_size();
  world.layout = r.layout();
  world.model = r.model();
  world.protocol_version = r.world_protocol_version();
  return world;
}

// "r0/tp-stage1" -> "r0".
std::string ReplicaOf(const std::string& group_id) {
  return group_id.substr(0, group_id.find('/'));
}

}  // namespace

RendezvousServiceImpl::RendezvousServiceImpl(const Topology* topology) : topology_(topology) {}

grpc::Status RendezvousServiceImpl::Exchange(grpc::ServerContext* context,
                                             const v1::RendezvousRequest* request,
                                             v1::RendezvousResponse* response) {
  absl::StatusOr<std::vector<std::string>> blobs = DoExchange(context, *request);
  if (!blobs.ok()) return wire::ToGrpcStatus(blobs.status());
  for (std::string& blob : *blobs) response->add_blobs(std::move(blob));
  return grpc::Status::OK;
}

int64_t RendezvousServiceImpl::groups_held() const {
  absl::MutexLock lock(&mutex_);
  int64_t n = 0;
  for (const auto& [id, replica] : replicas_) n += static_cast<int64_t>(replica.rounds.size());
  return n;
}

absl::StatusOr<std::vector<std::string>> RendezvousServiceImpl::DoExchange(
    grpc::ServerContext* context, const v1::RendezvousRequest& request) {
  const std::string& id = request.replica_id();
  const std::string who = absl::StrCat("replica '", id, "' rank ", request.rank());
  if (topology_->FindReplica(ReplicaOf(id)) == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("replica_id: '", id, "' is not a replica of the topology"));
  }
  const comm::WorldSpec world = WorldOf(request);
  RS_RETURN_IF_ERROR(world.Validate());
  RS_RETURN_IF_ERROR(world.ValidateRank(request.rank()));
  if (!(request.timeout_seconds() > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": timeout_seconds must be > 0, got ", request.timeout_seconds()));
  }
  if (request.round() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": round must be >= 0, got ", request.round()));
  }
  const absl::Duration timeout = std::min(absl::Seconds(request.timeout_seconds()), kMaxTimeout);
  const absl::Time deadline = absl::Now() + timeout;
  const int rank = request.rank();

  absl::MutexLock lock(&mutex_);
  Replica& replica = replicas_[id];
  if (request.round() < replica.newest_round) {
    return absl::FailedPreconditionError(absl::StrCat(who, ": round ", request.round(),
                                                      " is older than the replica's newest (",
                                                      replica.newest_round, ")"));
  }
  if (request.round() > replica.newest_round) {
    for (auto& [round, group] : replica.rounds) group->superseded = true;
    replica.rounds.clear();
    replica.newest_round = request.round();
    changed_.SignalAll();
  }
  std::shared_ptr<Group>& slot = replica.rounds[request.round()];
  if (slot == nullptr) {
    slot = std::make_shared<Group>();
    slot->world = world;
    slot->first_rank = rank;
    slot->blobs.resize(world.size);
  }
  const std::shared_ptr<Group> group = slot;  // outlives its slot when superseded
  RS_RETURN_IF_ERROR(comm::CheckSameWorld(group->world, group->first_rank, world, rank));
  if (group->blobs[rank].has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, " has already published in round ", request.round()));
  }
  group->blobs[rank] = request.blob();
  group->published++;
  changed_.SignalAll();

  while (group->published < group->world.size && !group->superseded) {
    const absl::Time now = absl::Now();
    if (now >= deadline || context->IsCancelled()) break;
    changed_.WaitWithTimeout(&mutex_, std::min(deadline - now, kCancelPoll));
  }
  if (group->superseded) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": round ", request.round(), " was superseded by round ",
                     replicas_[id].newest_round, " while waiting"));
  }
  if (group->published < group->world.size) {
    std::vector<int> missing;
    for (int r = 0; r < group->world.size; ++r) {
      if (!group->blobs[r].has_value()) missing.push_back(r);
    }
    group->blobs[rank].reset();  // withdrawn: the rank may try again
    group->published--;
    if (group->published == 0) replicas_[id].rounds.erase(request.round());
    if (context->IsCancelled()) {
      return absl::CancelledError(absl::StrCat(who, ": the caller went away"));
    }
    return absl::DeadlineExceededError(absl::StrCat(who, ": ranks [", absl::StrJoin(missing, ", "),
                                                    "] did not publish within ",
                                                    absl::FormatDuration(timeout)));
  }
  std::vector<std::string> blobs;
  blobs.reserve(group->blobs.size());
  for (const std::optional<std::string>& blob : group->blobs) blobs.push_back(*blob);
  if (++group->collected == group->world.size) replicas_[id].rounds.erase(request.round());
  return blobs;
}

}  // namespace rackserve::coordinator
