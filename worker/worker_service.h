// WorkerServiceImpl: the gRPC WorkerService of a worker, over the replicas of its registry —
// the edge where rackserve.v1 requests become ReplicaRequests and chunks become TokenChunks.
//
// Submit streams the request's chunks as the replica produces them (sync API: the handler
// thread blocks on a queue of chunks). A client that cancels or disconnects cancels that submission
// in the engine, never a later one of the same request_id; the Cancel RPC cancels the submission
// of the id now in flight. A request that fails on its replica (engine failure, shutdown) ends its
// stream with UNAVAILABLE, so the coordinator fails it over. Unknown replica_id: NOT_FOUND;
// invalid fields: INVALID_ARGUMENT naming them.
// Thread-safety: gRPC calls the handlers from many threads; the registry must outlive this.
#pragma once

#include "grpcpp/grpcpp.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "worker/replica_registry.h"

namespace rackserve::worker {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(ReplicaRegistry* registry) : registry_(registry) {}

  grpc::Status Submit(grpc::ServerContext* context, const v1::ReplicaRequest* request,
                      grpc::ServerWriter<v1::TokenChunk>* writer) override;
  grpc::Status Cancel(grpc::ServerContext* context, const v1::ReplicaCancel* request,
                      v1::CancelResponse* response) override;
  // Drains every replica of the worker (stop admitting, finish in flight); does not wait.
  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                     v1::DrainResponse* response) override;

 private:
  ReplicaRegistry* const registry_;
};

}  // namespace rackserve::worker
