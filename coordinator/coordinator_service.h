// CoordinatorService: the workers' side of the coordinator (rackserve.v1.CoordinatorService).
// Register checks a worker's view against the topology and returns its replica assignments;
// Heartbeats records each worker's cumulative counters and credit, and declares the worker dead
// when its stream ends or breaks (then `on_worker_dead(worker_id)` runs, to fail over its
// requests).
//
// Thread-safe (gRPC calls it from many threads). Proto types stop here.
#pragma once

#include <functional>
#include <string>

#include "coordinator/rack_context.h"
#include "rackserve/v1/worker.grpc.pb.h"

namespace rackserve::coordinator {

class CoordinatorServiceImpl final : public v1::CoordinatorService::Service {
 public:
  CoordinatorServiceImpl(RackContext rack,
                         std::function<void(const std::string& worker_id)> on_worker_dead);

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status Heartbeats(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::HeartbeatAck, v1::Heartbeat>* stream) override;

 private:
  RackContext rack_;
  std::function<void(const std::string& worker_id)> on_worker_dead_;
};

}  // namespace rackserve::coordinator
