// WorkerServiceImpl: the gRPC WorkerService of a worker, over the replicas of its registry —
// the edge where rackserve.v1 requests become ReplicaRequests and chunks become TokenChunks.
//
// Serve is the data path: one bidirectional stream per coordinator connection carries every
// submission of every replica, both ways, in batches (a ServeSession holds its state). A reader
// thread hands each ServeInbound to the session; the handler thread alone writes, each Write
// carrying everything produced since the last one, and alone asks whether the call was
// cancelled. After the client half-closes, the call ends OK once every submission on it has
// ended and its end was written. A broken stream (a failed Write, a cancelled call) cancels every
// submission still in flight on it, so none keeps running for nobody.
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

  grpc::Status Serve(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ServeOutbound, v1::ServeInbound>* stream) override;
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
