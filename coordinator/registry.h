// Registry: the workers of the rack, one per VM of the topology, and whether each replica is live.
//
// A worker registers with its view of the rack (protocol version, VM, devices, model); a view that
// differs from the topology is refused. A registered worker must heartbeat: one silent for longer
// than `heartbeat_timeout` is declared dead by ExpireDead(), as is one whose stream broke
// (MarkDead). A replica is live when every VM holding one of its ranks has a ready worker.
// The coordinator also asks workers to drain: a draining replica gets no new requests.
//
// Dead workers are forgotten (their entries removed) once a newer worker of their VM registered,
// or kForgetDeadAfter after they died, so a coordinator whose workers restart does not grow; the
// forgotten ones are handed out once by TakeForgotten() so their owners can drop state too.
//
// Thread-safe (one internal mutex). Keeps pointers to `topology` and `clock`, which must outlive
// it.
#pragma once

#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/clock.h"
#include "coordinator/topology.h"
#include "proto/wire_conversion.h"

namespace rackserve::coordinator {

using wire::kProtocolVersion;

// A worker's view of itself, as sent in RegisterRequest.
struct WorkerInfo {
  int protocol_version = 0;
  std::string vm;
  std::string address;  // host:port of its WorkerService
  int device_count = 0;
  std::string model;
  int64_t memory_bytes = 0;
};

// What a heartbeat says about one replica (cumulative since the worker started, except the gauges).
struct ReplicaReport {
  std::string replica_id;
  int64_t generated_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t free_token_credit = 0;  // gauge: tokens of KV the replica can still admit
  int64_t reserved_tokens = 0;    // gauge: tokens of KV its requests in flight reserve
  int64_t running = 0;            // gauge: sequences in the running batch
  int64_t waiting = 0;            // gauge: sequences queued on the worker
  int64_t kv_blocks_used = 0;     // gauge
  int64_t kv_blocks_total = 0;    // gauge
  double busy_seconds = 0;        // cumulative: time the replica's engine spent in steps
  double idle_seconds = 0;        // cumulative: time the replica had no request to run
  double read_at_unix_seconds = 0;  // when the worker read these counters
};

// The load gauges of a replica or a VM from the last heartbeats (zero until one arrived).
struct LoadFigures {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  double busy_seconds = 0;  // cumulative (see ReplicaReport)
  double idle_seconds = 0;  // cumulative (see ReplicaReport)
  double read_at_unix_seconds = 0;  // when they were read (a VM: the latest of its replicas)
};

enum class WorkerState { kReady, kDraining, kDead };

// A replica as the router sees it.
struct ReplicaStatus {
  std::string id;
  bool live = false;      // every VM of its ranks has a ready worker (none dead or draining)
  bool draining = false;  // not live only because a VM of its ranks is draining
  std::string address;    // the leader's worker address ("" until registered)
  std::string leader_vm;
  std::string leader_worker_id;         // "" while the leader's VM has no live worker
  std::vector<std::string> worker_ids;  // the live workers of its ranks' VMs, leader first
  // All the KV its requests may reserve: free_token_credit + reserved_tokens of the leader's last
  // report; 0 when it admits nothing (the report's free credit is 0: failed or draining).
  int64_t credit_budget = 0;
  LoadFigures load;  // the leader's last report
};

// A worker the registry forgot (see TakeForgotten).
struct ForgottenWorker {
  std::string worker_id;
  std::string address;
};

class Registry {
 public:
  Registry(const Topology* topology, const Clock* clock, absl::Duration heartbeat_timeout);

  // Registers the worker of `info.vm` and returns its worker id. FAILED_PRECONDITION naming what
  // differs: protocol version, unknown VM, device count, model. ALREADY_EXISTS when the VM's
  // worker is registered and alive (a restarted worker may register once the old one is dead).
  absl::StatusOr<std::string> Register(const WorkerInfo& info);

  // Records a heartbeat. NOT_FOUND for an unknown worker id; FAILED_PRECONDITION when the worker
  // was already declared dead (it must register again).
  absl::Status Heartbeat(const std::string& worker_id, const std::vector<ReplicaReport>& reports);

  // Declares dead every worker silent for longer than the timeout; returns their ids. Also
  // forgets workers dead for longer than kForgetDeadAfter.
  std::vector<std::string> ExpireDead();
  // Declares the worker dead now (its stream broke). No-op for an unknown or dead worker.
  void MarkDead(const std::string& worker_id);
  // True while the worker is registered and not dead (ready or draining).
  bool Alive(const std::string& worker_id) const;
  // Drain: stops routing to the replicas with a rank on the VM; their worker is asked to drain.
  // Resume undoes it. NOT_FOUND naming the VM when it is not in the topology; a no-op for a VM
  // without a live worker (a dead worker stays dead).
  absl::Status Drain(const std::string& vm);
  absl::Status Resume(const std::string& vm);
  bool DrainRequested(const std::string& worker_id) const;
  // The workers forgotten since the last call.
  std::vector<ForgottenWorker> TakeForgotten();

  // Every replica of the topology, in topology order.
  std::vector<ReplicaStatus> Replicas() const;
  // The same, shared: rebuilt only after something it shows changed (a registration, a report,
  // a death, a drain), so the dispatcher may ask on every placement.
  std::shared_ptr<const std::vector<ReplicaStatus>> ReplicasSnapshot() const;
  // The VM's load: the sum over its worker's last reports (zero without a live worker).
  LoadFigures VmLoad(const std::string& vm) const;
  // The worker id serving `vm`, or nullopt.
  std::optional<std::string> WorkerOf(const std::string& vm) const;
  // State and address of the VM's worker; kDead with "" when none registered.
  WorkerState VmState(const std::string& vm, std::string* address) const;
  // The VM of a worker id, or "".
  std::string VmOf(const std::string& worker_id) const;
  absl::Duration heartbeat_timeout() const { return heartbeat_timeout_; }

  // How long a dead worker whose VM got no newer worker is remembered.
  static constexpr absl::Duration kForgetDeadAfter = absl::Minutes(1);

 private:
  struct Worker {
    WorkerInfo info;
    WorkerState state = WorkerState::kReady;
    absl::Time last_heartbeat;
    absl::Time died;                                          // when state became kDead
    absl::flat_hash_map<std::string, ReplicaReport> reports;  // replica id -> last report
  };

  const Worker* LiveWorkerOfLocked(const std::string& vm) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  const std::string* LiveWorkerIdOfLocked(const std::string& vm) const
      ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  void KillLocked(Worker& worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void ForgetLocked(const std::string& worker_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  std::vector<ReplicaStatus> ReplicasLocked() const ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  // Moves the VM's live worker from state `from` to `to`; NOT_FOUND for a VM not in the topology.
  absl::Status SwitchState(const std::string& vm, WorkerState from, WorkerState to);

  const Topology* topology_;
  const Clock* clock_;
  const absl::Duration heartbeat_timeout_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, Worker> workers_ ABSL_GUARDED_BY(mutex_);         // by worker id
  absl::flat_hash_map<std::string, std::string> vm_worker_ ABSL_GUARDED_BY(mutex_);  // latest
  std::vector<ForgottenWorker> forgotten_ ABSL_GUARDED_BY(mutex_);  // until TakeForgotten
  int64_t next_worker_ ABSL_GUARDED_BY(mutex_) = 0;
  // ReplicasLocked() as of the last change; null when something changed since.
  mutable std::shared_ptr<const std::vector<ReplicaStatus>> snapshot_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace rackserve::coordinator
