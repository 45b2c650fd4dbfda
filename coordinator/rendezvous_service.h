// RendezvousService: the coordinator as the rendezvous of multi-rank replicas' communicators
// (rackserve.v1.RendezvousService). Each rank of a group calls Exchange with its WorldSpec and
// one opaque blob (a UCX worker address); the call waits until every rank of the group has
// published, then every waiting rank gets all blobs (index = rank).
//
// Groups: one per (replica_id, round). A replica may form several communicator groups (its
// world and one TP group per pipeline stage): their ids are "<replica>" and "<replica>/<group>"
// (e.g. "r0/tp-stage1"); the part before '/' must be a replica of the topology (else NOT_FOUND).
// The first rank to publish in a group sets its WorldSpec; every later rank must present the same
// (comm::CheckSameWorld: FAILED_PRECONDITION naming the field). A rank outside [0, world_size) or
// one that already published: INVALID_ARGUMENT naming the rank. A rank still waiting when its
// timeout_seconds pass gets DEADLINE_EXCEEDED naming the missing ranks, and its publication is
// withdrawn (it may try again). `round` counts a group's formations: a request for a newer round
// frees the older ones (ranks still waiting there get FAILED_PRECONDITION), and a request for a
// round older than the newest seen is FAILED_PRECONDITION. A group is freed once every rank has
// collected the blobs.
//
// Thread-safe: gRPC calls it from many threads; each waiting call holds one server thread for at
// most its timeout (capped at kMaxTimeout) or until the client cancels. Proto types stop here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/topology.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "runtime/comm/world_spec.h"

namespace rackserve::coordinator {

class RendezvousServiceImpl final : public v1::RendezvousService::Service {
 public:
  // The longest a call may wait, whatever its timeout_seconds.
  static constexpr absl::Duration kMaxTimeout = absl::Minutes(10);

  // `topology` must outlive the service.
  explicit RendezvousServiceImpl(const Topology* topology);

  grpc::Status Exchange(grpc::ServerContext* context, const v1::RendezvousRequest* request,
                        v1::RendezvousResponse* response) override;

  // Groups currently held (tests check that old rounds and completed groups are freed).
  int64_t groups_held() const;

 private:
  struct Group {
    comm::WorldSpec world;  // the first publisher's
    int first_rank = 0;
    std::vector<std::optional<std::string>> blobs;  // by rank
    int published = 0;
    int collected = 0;        // ranks that returned with the blobs
    bool superseded = false;  // a newer round of the same id started
  };
  struct Replica {
    int64_t newest_round = 0;
    absl::flat_hash_map<int64_t, std::shared_ptr<Group>> rounds;
  };

  absl::StatusOr<std::vector<std::string>> DoExchange(grpc::ServerContext* context,
                                                      const v1::RendezvousRequest& request);

  const Topology* topology_;
  mutable absl::Mutex mutex_;
  absl::CondVar changed_;  // a group gained a blob, lost one or was superseded
  absl::flat_hash_map<std::string, Replica> replicas_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace rackserve::coordinator
