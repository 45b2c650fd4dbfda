#include "coordinator/coordinator_service.h"

#include <cstdio>
#include <utility>
#include <vector>

#include "proto/wire_conversion.h"

namespace rackserve::coordinator {

CoordinatorServiceImpl::CoordinatorServiceImpl(
    RackContext rack, std::function<void(const std::string&)> on_worker_dead)
    : rack_(rack), on_worker_dead_(std::move(on_worker_dead)) {}

grpc::Status CoordinatorServiceImpl::Register(grpc::ServerContext* /*context*/,
                                              const v1::RegisterRequest* request,
                                              v1::RegisterResponse* response) {
  WorkerInfo info;
  info.protocol_version = request->protocol_version();
  info.vm = request->vm();
  info.address = request->address();
  info.device_count = request->devices_size();
  info.model = request->model();
  info.memory_bytes = request->memory_bytes();
  if (info.address.empty()) {
    return wire::ToGrpcStatus(absl::InvalidArgumentError("address: empty worker address"));
  }
  absl::StatusOr<std::string> id = rack_.registry->Register(info);
  if (!id.ok()) return wire::ToGrpcStatus(id.status());
  response->set_worker_id(*id);
  response->set_heartbeat_interval_seconds(
      absl::ToDoubleSeconds(rack_.registry->heartbeat_timeout()) / 3);
  for (const VmAssignment& a : rack_.topology->AssignmentsFor(info.vm)) {
    const ReplicaSpec* spec = rack_.topology->FindReplica(a.replica_id);
    v1::ReplicaAssignment* out = response->add_assignments();
    out->set_replica_id(spec->id);
    out->set_tp(spec->tp);
    out->set_pp(spec->pp);
    out->set_leader_here(a.leader_here);
    for (const RankSpec& rank : spec->ranks) {
      v1::RankPlacement* p = out->add_ranks();
      p->set_vm(rank.vm);
      p->set_device(rank.device);
    }
  }
  rack_.dispatcher->Wake();
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::Heartbeats(
    grpc::ServerContext* /*context*/,
    grpc::ServerReaderWriter<v1::HeartbeatAck, v1::Heartbeat>* stream) {
  std::string worker_id;
  v1::Heartbeat beat;
  absl::Status status;
  while (stream->Read(&beat)) {
    if (worker_id.empty()) worker_id = beat.worker_id();
    if (beat.worker_id() != worker_id) {
      status = absl::InvalidArgumentError("worker_id: changed within one Heartbeats stream");
      break;
    }
    std::vector<ReplicaReport> reports;
    for (const v1::ReplicaCounters& c : beat.replicas()) {
      ReplicaReport& r = reports.emplace_back();
      r.replica_id = c.replica_id();
      r.generated_tokens = c.generated_tokens();
      r.prompt_tokens = c.prompt_tokens();
      r.free_token_credit = c.free_token_credit();
      r.reserved_tokens = c.reserved_tokens();
      r.read_at_unix_seconds = c.read_at_unix_seconds();
      r.running = c.running();
      r.waiting = c.waiting();
      r.kv_blocks_used = c.kv_blocks_used();
      r.kv_blocks_total = c.kv_blocks_total();
      r.busy_seconds = c.busy_seconds();
      r.idle_seconds = c.idle_seconds();
    }
    status = rack_.registry->Heartbeat(worker_id, reports);
    if (!status.ok()) break;
    const absl::Time now = rack_.clock->Now();
    for (const ReplicaReport& r : reports) {
      rack_.throughput->ReportCounters(now, worker_id, r.replica_id, r.generated_tokens,
                                       r.prompt_tokens);
      rack_.dispatcher->OnCreditReport(r.replica_id);
    }
    v1::HeartbeatAck ack;
    ack.set_drain(rack_.registry->DrainRequested(worker_id));
    if (!stream->Write(ack)) break;
  }
  if (!worker_id.empty()) {
    std::fprintf(stderr, "worker %s: its heartbeat stream ended (%s)\n", worker_id.c_str(),
                 status.ok() ? "closed" : std::string(status.message()).c_str());
    rack_.registry->MarkDead(worker_id);
    on_worker_dead_(worker_id);
  }
  return wire::ToGrpcStatus(status);
}

}  // namespace rackserve::coordinator
