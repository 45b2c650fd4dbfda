// Registry: the workers of the rack, one per VM of the topology, and whether each replica is live.
//
// A worker registers with its view of the rack (protocol version, VM, devices, model); a view that
// differs from the topology is refused. A registered worker must heartbeat: one silent for longer
// than `heartbeat_timeout` is declared dead by ExpireDead(), as is one whose stream broke
// (MarkDead). A replica is live when every VM holding one of its ranks has a live worker.
// The coordinator also asks workers to drain: a draining replica gets no new requests.
//
// Thread-safe (one internal mutex). Keeps pointers to `topology` and `clock`, which must outlive
// it.
#pragma once

#include <cstdint>
#include <optional>
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
};

// A replica as the router sees it.
struct ReplicaStatus {
  std::string id;
  bool live = false;    // every VM of its ranks has a live worker, and none is draining
  std::string address;  // the leader's worker address ("" until registered)
  std::string leader_vm;
  int64_t free_token_credit = 0;
};

enum class WorkerState { kReady, kDraining, kDead };

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

  // Declares dead every worker silent for longer than the timeout; returns their ids.
  std::vector<std::string> ExpireDead();
  // Declares the worker dead now (its stream broke). No-op for an unknown or dead worker.
  void MarkDead(const std::string& worker_id);
  // Stops routing to the worker's replicas. NOT_FOUND for an unknown VM.
  absl::Status Drain(const std::string& vm);
  bool DrainRequested(const std::string& worker_id) const;

  std::vector<ReplicaStatus> Replicas() const;
  // The worker id serving `vm`, or nullopt.
  std::optional<std::string> WorkerOf(const std::string& vm) const;
  // State and address of the VM's worker; kDead with "" when none registered.
  WorkerState VmState(const std::string& vm, std::string* address) const;
  // The VM of a worker id, or "".
  std::string VmOf(const std::string& worker_id) const;
  absl::Duration heartbeat_timeout() const { return heartbeat_timeout_; }

 private:
  struct Worker {
    WorkerInfo info;
    WorkerState state = WorkerState::kReady;
    absl::Time last_heartbeat;
    absl::flat_hash_map<std::string, int64_t> credit;  // replica id -> free_token_credit
  };

  const Worker* LiveWorkerOfLocked(const std::string& vm) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);

  const Topology* topology_;
  const Clock* clock_;
  const absl::Duration heartbeat_timeout_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, Worker> workers_ ABSL_GUARDED_BY(mutex_);         // by worker id
  absl::flat_hash_map<std::string, std::string> vm_worker_ ABSL_GUARDED_BY(mutex_);  // latest
  int64_t next_worker_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace rackserve::coordinator
