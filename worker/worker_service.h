// WorkerServiceImpl: the gRPC WorkerService of a worker, over the replicas of its registry —
// the edge where rackserve.v1 requests become ReplicaRequests and chunks become ServeOutbounds.
//
// Serve is the data path: one bidirectional stream per coordinator connection carries every
// submission of every replica, both ways, in batches (a ServeSession holds its state). A reader
// thread hands each ServeInbound to the session; the handler thread alone writes, each Write
// carrying everything produced since the last one, and alone asks whether the call was
// cancelled. Writes start at most once per flush interval: tokens and ends produced meanwhile
// pile up in the session's outbox and go in the next Write (fewer messages and wake-ups), so
// none waits more than one interval for its Write; zero writes as soon as anything is there.
// After the client half-closes, the call ends OK once every submission on it has ended and its
// end was written. A broken stream (a failed Write, a cancelled call) cancels every submission
// still in flight on it, so none keeps running for nobody.
//
// Drain drains every replica of the worker.
// Thread-safety: gRPC calls the handlers from many threads; the registry must outlive this.
#pragma once

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "worker/replica_registry.h"

namespace rackserve::worker {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // `flush_interval` >= 0: the least time between the starts of two Writes of a Serve stream.
  WorkerServiceImpl(ReplicaRegistry* registry, absl::Duration flush_interval);

  grpc::Status Serve(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ServeOutbound, v1::ServeInbound>* stream) override;
  // Drains every replica of the worker (stop admitting, finish in flight); does not wait.
  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                     v1::DrainResponse* response) override;

 private:
  ReplicaRegistry* const registry_;
  const absl::Duration flush_interval_;
};

}  // namespace rackserve::worker
