// CoordinatorClient: a worker's session with the coordinator — registration, then one
// Heartbeats stream carrying the replicas' counters every heartbeat interval.
//
// Run on its own thread (Start/Stop). Registration is retried with exponential backoff while
// the coordinator is unreachable or refuses for a transient reason (UNAVAILABLE,
// DEADLINE_EXCEEDED); any other refusal (a mismatching view, a wrong protocol version) is final
// and reported by status(). After registering, the assignments go to the on_assignments callback
// (which creates the ReplicaHosts); when the heartbeat stream breaks the client registers again.
// A HeartbeatAck with drain = true calls on_drain. Callbacks run on the client's threads.
// Thread-safety: all public methods are thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "proto/wire_conversion.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "worker/replica_host.h"

namespace rackserve::worker {

using wire::kProtocolVersion;

// What the worker tells the coordinator about itself.
struct WorkerIdentity {
  std::string vm;       // the VM's name in the topology
  std::string address;  // host:port of this worker's WorkerService (the bound port)
  int num_devices = 1;  // devices 0 .. num_devices-1
  std::string device_kind = "cpu";
  std::string model;  // model identity (its directory)
  int64_t memory_bytes = 0;
};

// One replica the coordinator placed (partly) on this worker.
struct Assignment {
  std::string replica_id;
  int tp = 1;
  int pp = 1;
  std::vector<int> local_devices;  // this VM's devices among the replica's ranks, in rank order
  bool leader_here = false;
};

struct CoordinatorClientOptions {
  absl::Duration initial_backoff = absl::Milliseconds(100);  // first registration retry delay
  absl::Duration max_backoff = absl::Seconds(2);             // retry delay cap (doubles)
  absl::Duration rpc_timeout = absl::Seconds(5);             // deadline of Register
  // Callbacks, all on the client's thread. on_assignments creates the replicas (it is called
  // after every registration, so it must keep replicas it already has); an error stops the
  // client (status() reports it).
  std::function<absl::Status(const std::vector<Assignment>&)> on_assignments;
  // The replicas' counters; heartbeats report their cumulative ones as counted since the
  // registration (a worker that registers again starts from zero), their gauges as they are.
  std::function<std::vector<ReplicaCounters>()> counters;
  std::function<void()> on_drain;
};

class CoordinatorClient {
 public:
  CoordinatorClient(std::string coordinator_address, WorkerIdentity identity,
                    CoordinatorClientOptions options);
  ~CoordinatorClient();  // Stop()
  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  void Start();
  // Ends the session (closes the heartbeat stream) and joins the thread. Idempotent.
  void Stop();
  // Waits until registered (true) or the client stopped or timed out (false).
  bool WaitRegistered(absl::Duration timeout);
  std::string worker_id() const;
  int64_t heartbeats_sent() const;
  // OK while running; the final error when the coordinator refused or on_assignments failed.
  absl::Status status() const;

 private:
  void Run();
  // Registers, retrying transient failures; false once stopped or after a final error.
  bool RegisterWithRetry(absl::Duration* heartbeat_interval);
  // Streams heartbeats until the stream breaks or Stop().
  void Heartbeat(absl::Duration interval);
  // Sleeps up to `d`; false when stopped meanwhile.
  bool SleepUnlessStopped(absl::Duration d);

  const std::string address_;
  const WorkerIdentity identity_;
  const CoordinatorClientOptions options_;
  const std::unique_ptr<v1::CoordinatorService::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                              // guarded by mu_
  bool registered_ = false;                        // guarded by mu_
  std::string worker_id_;                          // guarded by mu_
  int64_t heartbeats_sent_ = 0;                    // guarded by mu_
  absl::Status status_;                            // guarded by mu_
  grpc::ClientContext* stream_context_ = nullptr;  // the open stream's; guarded by mu_
  std::thread thread_;
};

}  // namespace rackserve::worker
