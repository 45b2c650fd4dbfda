// CoordinatorRendezvous: a comm::Rendezvous through the coordinator's RendezvousService, which is
// how the ranks of a multi-rank replica find each other when they run in different workers.
//
// Each Exchange is one RendezvousService.Exchange call for (group_id, round): the coordinator
// holds the call until every rank of the group has published, checks that all describe the same
// world, and answers with every rank's blob. `group_id` is the replica id for the replica's world
// group, or "<replica>/<group>" for another group of the same replica (a pipeline stage's TP
// group); see coordinator/rendezvous_service.h. Errors are those of comm::Rendezvous as the
// coordinator reports them (its messages name the replica, rank and field), plus UNAVAILABLE when
// the coordinator cannot be reached and NOT_FOUND for a replica it does not know.
//
// Thread-safe: one object may serve several local ranks of a group at once (one Exchange each).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "runtime/comm/rendezvous.h"

namespace rackserve::worker {

class CoordinatorRendezvous : public comm::Rendezvous {
 public:
  // `channel` leads to the coordinator; `worker_id` is this worker's registered id (for the
  // coordinator's messages).
  CoordinatorRendezvous(std::shared_ptr<grpc::Channel> channel, std::string worker_id,
                        std::string group_id, int64_t round);

  absl::StatusOr<std::vector<std::string>> Exchange(const comm::WorldSpec& world, int rank,
                                                    std::string blob,
                                                    absl::Duration timeout) override;

 private:
  const std::unique_ptr<v1::RendezvousService::Stub> stub_;
  const std::string worker_id_;
  const std::string group_id_;
  const int64_t round_;
};

}  // namespace rackserve::worker
