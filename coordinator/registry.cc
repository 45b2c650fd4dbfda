#include "coordinator/registry.h"

#include <algorithm>
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
  // The VM's earlier workers are all dead: the new one supersedes them.
  std::vector<std::string> superseded;
  for (const auto& [id, worker] : workers_) {
    if (worker.info.vm == info.vm) superseded.push_back(id);
  }
  for (const std::string& id : superseded) ForgetLocked(id);
  std::string id = absl::StrCat(info.vm, "#", next_worker_++);
  Worker worker;
  worker.info = info;
  worker.last_heartbeat = clock_->Now();
  workers_[id] = std::move(worker);
  vm_worker_[info.vm] = id;
  snapshot_ = nullptr;
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
  for (const ReplicaReport& report : reports) worker.reports[report.replica_id] = report;
  snapshot_ = nullptr;
  return absl::OkStatus();
}

void Registry::KillLocked(Worker& worker) {
  if (worker.state == WorkerState::kDead) return;
  worker.state = WorkerState::kDead;
  snapshot_ = nullptr;
  worker.died = clock_->Now();
}

void Registry::ForgetLocked(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  forgotten_.push_back({worker_id, it->second.info.address});
  auto latest = vm_worker_.find(it->second.info.vm);
  if (latest != vm_worker_.end() && latest->second == worker_id) vm_worker_.erase(latest);
  workers_.erase(it);
  snapshot_ = nullptr;
}

std::vector<std::string> Registry::ExpireDead() {
  const absl::Time now = clock_->Now();
  std::vector<std::string> dead, forget;
  absl::MutexLock lock(&mutex_);
  for (auto& [id, worker] : workers_) {
    if (worker.state != WorkerState::kDead && now - worker.last_heartbeat > heartbeat_timeout_) {
      KillLocked(worker);
      dead.push_back(id);
    } else if (worker.state == WorkerState::kDead && now - worker.died > kForgetDeadAfter) {
      forget.push_back(id);
    }
  }
  for (const std::string& id : forget) ForgetLocked(id);
  return dead;
}

void Registry::MarkDead(const std::string& worker_id) {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) KillLocked(it->second);
}

bool Registry::Alive(const std::string& worker_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.state != WorkerState::kDead;
}

absl::Status Registry::SwitchState(const std::string& vm, WorkerState from, WorkerState to) {
  if (topology_->FindVm(vm) == nullptr) {
    return absl::NotFoundError(absl::StrCat("vm: \"", vm, "\" is not in the topology"));
  }
  absl::MutexLock lock(&mutex_);
  auto it = vm_worker_.find(vm);
  if (it == vm_worker_.end()) return absl::OkStatus();
  Worker& worker = workers_.at(it->second);
  if (worker.state == from) worker.state = to;
  snapshot_ = nullptr;
  return absl::OkStatus();
}

absl::Status Registry::Drain(const std::string& vm) {
  return SwitchState(vm, WorkerState::kReady, WorkerState::kDraining);
}

absl::Status Registry::Resume(const std::string& vm) {
  return SwitchState(vm, WorkerState::kDraining, WorkerState::kReady);
}

bool Registry::DrainRequested(const std::string& worker_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.state == WorkerState::kDraining;
}

std::vector<ForgottenWorker> Registry::TakeForgotten() {
  absl::MutexLock lock(&mutex_);
  return std::exchange(forgotten_, {});
}

const std::string* Registry::LiveWorkerIdOfLocked(const std::string& vm) const {
  auto it = vm_worker_.find(vm);
  if (it == vm_worker_.end()) return nullptr;
  return workers_.at(it->second).state == WorkerState::kDead ? nullptr : &it->second;
}

const Registry::Worker* Registry::LiveWorkerOfLocked(const std::string& vm) const {
  const std::string* id = LiveWorkerIdOfLocked(vm);
  return id == nullptr ? nullptr : &workers_.at(*id);
}

std::vector<ReplicaStatus> Registry::Replicas() const { return *ReplicasSnapshot(); }

std::shared_ptr<const std::vector<ReplicaStatus>> Registry::ReplicasSnapshot() const {
  absl::MutexLock lock(&mutex_);
  if (snapshot_ == nullptr) {
    snapshot_ = std::make_shared<const std::vector<ReplicaStatus>>(ReplicasLocked());
  }
  return snapshot_;
}

std::vector<ReplicaStatus> Registry::ReplicasLocked() const {
  std::vector<ReplicaStatus> out;
  for (const ReplicaSpec& spec : topology_->replicas()) {
    ReplicaStatus status;
    status.id = spec.id;
    status.leader_vm = spec.ranks.front().vm;
    bool any_dead = false, any_draining = false;
    for (const RankSpec& rank : spec.ranks) {
      const std::string* id = LiveWorkerIdOfLocked(rank.vm);
      if (id == nullptr) {
        any_dead = true;
        continue;
      }
      if (workers_.at(*id).state == WorkerState::kDraining) any_draining = true;
      if (std::find(status.worker_ids.begin(), status.worker_ids.end(), *id) ==
          status.worker_ids.end()) {
        status.worker_ids.push_back(*id);
      }
    }
    status.live = !any_dead && !any_draining;
    status.draining = !any_dead && any_draining;
    if (const std::string* leader_id = LiveWorkerIdOfLocked(status.leader_vm)) {
      const Worker& leader = workers_.at(*leader_id);
      status.leader_worker_id = *leader_id;
      status.address = leader.info.address;
      auto report = leader.reports.find(spec.id);
      if (report != leader.reports.end()) {
        status.credit_budget =
            report->second.free_token_credit > 0
                ? report->second.free_token_credit + report->second.reserved_tokens
                : 0;
        status.load = {report->second.running,
                       report->second.waiting,
                       report->second.kv_blocks_used,
                       report->second.kv_blocks_total,
                       report->second.busy_seconds,
                       report->second.idle_seconds,
                       report->second.read_at_unix_seconds};
      }
    }
    out.push_back(std::move(status));
  }
  return out;
}

LoadFigures Registry::VmLoad(const std::string& vm) const {
  absl::MutexLock lock(&mutex_);
  LoadFigures load;
  const Worker* worker = LiveWorkerOfLocked(vm);
  if (worker == nullptr) return load;
  for (const auto& [replica_id, report] : worker->reports) {
    load.running += report.running;
    load.waiting += report.waiting;
    load.kv_blocks_used += report.kv_blocks_used;
    load.kv_blocks_total += report.kv_blocks_total;
    load.busy_seconds += report.busy_seconds;
    load.idle_seconds += report.idle_seconds;
    load.read_at_unix_seconds = std::max(load.read_at_unix_seconds, report.read_at_unix_seconds);
  }
  return load;
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
