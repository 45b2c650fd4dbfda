// RankGroup: the ranks of one multi-rank (TP x PP) replica that run on this worker — their
// communicators, model shards and threads — formed against a rendezvous shared with the
// replica's other ranks (which may run in other workers), and torn down together.
//
// Form() connects every local rank at once, one thread each (a rank's world communicator through
// the group id "<replica>", its pipeline stage's TP communicator through
// "<replica>/tp-stage<s>"), then loads each rank's shard. The leader (rank 0), when local, becomes
// an Engine over a DistributedModelRunner, handed out once by TakeLeaderEngine() (to a
// ReplicaHost); every other local rank keeps its thread and runs engine::RunFollower until the
// leader shuts the replica down or a rank fails. The leader's communicators keep
// `comm_timeout`; a follower's world communicator has no operation timeout, so an idle replica
// stays up indefinitely while a dead or failed peer still fails it (see
// distributed_model_runner.h).
//
// Failure: a rank that dies or fails breaks the replica: the leader's steps then fail (its
// requests end with an error, see ReplicaHost), status() reports the first failure, and the
// worker stops advertising credit for it. The worker itself stays up. Rebuilding a broken replica
// (a new rendezvous round) is not done yet: it stays broken until the worker restarts.
//
// Ownership and lifetime: the group owns its communicators, the followers' shards and thread
// pools, and the follower threads. The leader's Engine (with its runner, shard and pool) is owned
// by whoever took it, and uses the group's leader communicators: the group must outlive it.
// Destruction aborts the communicators of followers still running (their peers learn the replica
// is gone) and joins their threads.
//
// Thread-safety: Form() once, from one thread; status(), replica_id() and TakeLeaderEngine() from
// any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/base/thread_pool.h"
#include "runtime/comm/communicator.h"
#include "runtime/comm/rendezvous.h"
#include "runtime/engine/cpu_shard_executor.h"
#include "runtime/engine/distributed_model_runner.h"
#include "runtime/engine/engine.h"

namespace rackserve::worker {

struct RankGroupOptions {
  std::string replica_id;
  int tp = 1;
  int pp = 1;
  std::vector<int> local_ranks;  // the replica's ranks placed on this worker, each in [0, tp*pp)
  std::string model_dir;         // every rank's model directory (the world's model identity)
  engine::EngineOptions engine;  // per rank: threads, KV cache size (all ranks must agree)
  // Per communicator operation of the leader and of TP groups (followers' world: unbounded).
  absl::Duration comm_timeout = absl::Seconds(30);
  // The rendezvous plus the handshake with every peer.
  absl::Duration connect_timeout = absl::Seconds(120);
};

// Makes the rendezvous of one communicator group, by group id ("<replica>" or
// "<replica>/tp-stage<s>").
using RendezvousFactory = std::function<std::unique_ptr<comm::Rendezvous>(const std::string&)>;

class RankGroup {
 public:
  RankGroup(RankGroupOptions options, RendezvousFactory rendezvous);
  ~RankGroup();
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  // Connects and loads every local rank (blocks until all are ready or one failed) and starts
  // the followers. Errors: INVALID_ARGUMENT naming the field for bad options (local_ranks empty,
  // a rank outside [0, tp*pp) or listed twice); those of the rendezvous and communicator
  // (FAILED_PRECONDITION for a mismatching world, DEADLINE_EXCEEDED naming missing ranks, ...)
  // and of shard loading, each prefixed with the replica and rank. On error nothing keeps running.
  absl::Status Form();

  // The leader's Engine, once, after a successful Form() when rank 0 is local; else null.
  std::unique_ptr<engine::Engine> TakeLeaderEngine();

  // OK while every local rank works; else the first failure (a follower's RunFollower error, or
  // the leader runner's failed step). Call it only while the leader's Engine, once taken, lives.
  absl::Status status() const;
  const std::string& replica_id() const { return options_.replica_id; }

 private:
  // One rank placed here. Members are destroyed in reverse order: the shard before the pool and
  // the TP communicator it uses, the communicators last.
  struct LocalRank {
    int rank = 0;
    std::unique_ptr<comm::Communicator> world;
    std::unique_ptr<comm::Communicator> tp;  // the stage's TP group (tp > 1)
    std::unique_ptr<base::ThreadPool> pool;  // followers only: the leader's is the engine's
    std::unique_ptr<engine::CpuShardExecutor> shard;  // followers only
  };

  // A rank's thread: connects and loads, waits for the others, then follows (or builds the
  // leader's engine).
  void RunRank(LocalRank* local);
  // Connects and loads one rank; the leader's engine goes to leader_engine_.
  absl::Status Connect(LocalRank* local);

  const RankGroupOptions options_;
  const RendezvousFactory rendezvous_;
  std::vector<std::unique_ptr<LocalRank>> ranks_;
  std::vector<std::thread> threads_;

  mutable absl::Mutex mu_;
  int connected_ ABSL_GUARDED_BY(mu_) = 0;       // ranks done connecting (either way)
  bool go_ ABSL_GUARDED_BY(mu_) = false;         // all connected: followers may follow
  bool formed_ ABSL_GUARDED_BY(mu_) = false;     // Form() decided (go_ or abandon)
  bool torn_down_ ABSL_GUARDED_BY(mu_) = false;  // the destructor runs
  absl::Status failure_ ABSL_GUARDED_BY(mu_);    // first failure of any local rank
  std::unique_ptr<engine::Engine> leader_engine_ ABSL_GUARDED_BY(mu_);
  engine::DistributedModelRunner* leader_runner_ ABSL_GUARDED_BY(mu_) = nullptr;  // the engine's
};

}  // namespace rackserve::worker
