#include "coordinator/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace rackserve::coordinator {

Registry::Registry(const Topology* topology, const Clock* clock, absl::Duration heartbeat_timeout)
    : topology_(topology), clock_(clock), heartbeat_timeout_(heartbeat_timeout) {}

absl::StatusOr<std::string> Registry::Register(const WorkerInfo& info) {
  if (info.protocol_version != kProtocolVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("protocol_version: worker of VM \"", info.vm, "\" speaks ",
                     info.protocol_version, ", the coordinator speaks ", kProtocolVersion));
  }
  const VmSpec* vm = topology_->FindVm(info.vm);
  if (vm == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("vm: \"", info.vm, "\" is not in the topology"));
  }
  if (info.device_count != vm->devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("devices: VM \"", info.vm, "\" offers ", info.device_count,
                     " devices, the topology expects ", vm->devices));
  }
  if (info.model != topology_->model()) {
    return absl::FailedPreconditionError(
        absl::StrCat("model: worker of VM \"", info.vm, "\" serves \"", info.model,
                     "\", the topology's model is \"", topology_->model(), "\""));
  }
  absl::MutexLock lock(&mutex_);
  if (LiveWorkerOfLocked(info.vm) != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("vm: VM \"", info.vm, "\" already has a live worker"));
  }
  std::string id = absl::StrCat(info.vm, "#", next_worker_++);
  Worker worker;
  worker.info = info;
  worker.last_heartbeat = clock_->Now();
  workers_[id] = std::move(worker);
  vm_worker_[info.vm] = id;
  return id;
}

absl::Status Registry::Heartbeat(const std::string& worker_id,
                                 const std::vector<ReplicaReport>& reports) {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("worker_id: unknown worker \"", worker_id, "\""));
  }
  Worker& worker = it->second;
  if (worker.state == WorkerState::kDead) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker_id: worker \"", worker_id, "\" was declared dead; register again"));
  }
  worker.last_heartbeat = clock_->Now();
  for (const ReplicaReport& report : reports) {
    worker.credit[report.replica_id] = report.free_token_credit;
  }
  return absl::OkStatus();
}

std::vector<std::string> Registry::ExpireDead() {
  const absl::Time now = clock_->Now();
  std::vector<std::string> dead;
  absl::MutexLock lock(&mutex_);
  for (auto& [id, worker] : workers_) {
    if (worker.state != WorkerState::kDead && now - worker.last_heartbeat > heartbeat_timeout_) {
      worker.state = WorkerState::kDead;
      dead.push_back(id);
    }
  }
  return dead;
}

void Registry::MarkDead(const std::string& worker_id) {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.state = WorkerState::kDead;
}

absl::Status Registry::Drain(const std::string& vm) {
  absl::MutexLock lock(&mutex_);
  auto it = vm_worker_.find(vm);
  if (it == vm_worker_.end()) {
    return absl::NotFoundError(absl::StrCat("vm: no worker registered for \"", vm, "\""));
  }
  Worker& worker = workers_[it->second];
  if (worker.state == WorkerState::kReady) worker.state = WorkerState::kDraining;
  return absl::OkStatus();
}

bool Registry::DrainRequested(const std::string& worker_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.state == WorkerState::kDraining;
}

const Registry::Worker* Registry::LiveWorkerOfLocked(const std::string& vm) const {
  auto it = vm_worker_.find(vm);
  if (it == vm_worker_.end()) return nullptr;
  const Worker& worker = workers_.at(it->second);
  return worker.state == WorkerState::kDead ? nullptr : &worker;
}

std::vector<ReplicaStatus> Registry::Replicas() const {
  absl::MutexLock lock(&mutex_);
  std::vector<ReplicaStatus> out;
  for (const ReplicaSpec& spec : topology_->replicas()) {
    ReplicaStatus status;
    status.id = spec.id;
    status.leader_vm = spec.ranks.front().vm;
    status.live = true;
    for (const RankSpec& rank : spec.ranks) {
      const Worker* worker = LiveWorkerOfLocked(rank.vm);
      if (worker == nullptr || worker->state != WorkerState::kReady) status.live = false;
    }
    if (const Worker* leader = LiveWorkerOfLocked(status.leader_vm); leader != nullptr) {
      status.address = leader->info.address;
      auto credit = leader->credit.find(spec.id);
      if (credit != leader->credit.end()) status.free_token_credit = credit->second;
    }
    out.push_back(std::move(status));
  }
  return out;
}

std::optional<std::string> Registry::WorkerOf(const std::string& vm) const {
  absl::MutexLock lock(&mutex_);
  auto it = vm_worker_.find(vm);
  if (it == vm_worker_.end()) return std::nullopt;
  return it->second;
}

WorkerState Registry::VmState(const std::string& vm, std::string* address) const {
  absl::MutexLock lock(&mutex_);
  address->clear();
  auto it = vm_worker_.find(vm);
  if (it == vm_worker_.end()) return WorkerState::kDead;
  const Worker& worker = workers_.at(it->second);
  *address = worker.info.address;
  return worker.state;
}

std::string Registry::VmOf(const std::string& worker_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? std::string() : it->second.info.vm;
}

}  // namespace rackserve::coordinator
