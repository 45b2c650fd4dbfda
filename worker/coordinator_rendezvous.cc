#include "worker/coordinator_rendezvous.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "proto/wire_conversion.h"

namespace rackserve::worker {
namespace {

// The call's deadline exceeds the rendezvous timeout by this much, so the coordinator's answer
// (naming the missing ranks) arrives before gRPC's own DEADLINE_EXCEEDED.
constexpr absl::Duration kReplyMargin = absl::Seconds(5);

}  // namespace

CoordinatorRendezvous::CoordinatorRendezvous(std::shared_ptr<grpc::Channel> channel,
                                             std::string worker_id, std::string group_id,
                                             int64_t round)
    : stub_(v1::RendezvousService::NewStub(std::move(channel))),
      worker_id_(std::move(worker_id)),
      group_id_(std::move(group_id)),
      round_(round) {}

absl::StatusOr<std::vector<std::string>> CoordinatorRendezvous::Exchange(
    const comm::WorldSpec& world, int rank, std::string blob, absl::Duration timeout) {
  v1::RendezvousRequest request;
  request.set_worker_id(worker_id_);
  request.set_replica_id(group_id_);
  request.set_rank(rank);
  request.set_world_size(world.size);
  request.set_layout(world.layout);
  request.set_model(world.model);
  request.set_world_protocol_version(world.protocol_version);
  request.set_blob(std::move(blob));
  request.set_timeout_seconds(absl::ToDoubleSeconds(timeout));
  request.set_round(round_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout + kReplyMargin));
  v1::RendezvousResponse response;
  const grpc::Status status = stub_->Exchange(&context, request, &response);
  if (!status.ok()) {
    const absl::Status s = wire::FromGrpcStatus(status);
    return absl::Status(s.code(), absl::StrCat("rendezvous of '", group_id_, "' round ", round_,
                                               " (rank ", rank, "): ", s.message()));
  }
  if (response.blobs_size() != world.size) {
    return absl::DataLossError(absl::StrCat("rendezvous of '", group_id_,
                                            "': the coordinator sent ", response.blobs_size(),
                                            " blobs for a world of ", world.size, " ranks"));
  }
  return std::vector<std::string>(response.blobs().begin(), response.blobs().end());
}

}  // namespace rackserve::worker
