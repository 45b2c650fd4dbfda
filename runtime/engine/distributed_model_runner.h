// A replica spread over TP x PP rank processes, driven SPMD-style from its leader (rank 0).
//
// The leader runs the Engine (scheduler, KV block tables, sampling) with a DistributedModelRunner:
// each Forward broadcasts the step's batch (chunks: tokens, start positions, block tables,
// sampling flags) over the replica's world communicator; then every rank runs its part —
// RunRankStep — and the last stage's first TP rank sends the logits to the leader. The other
// ranks run RunFollower until the leader's Shutdown().
//
// Pipeline: the batch is split into micro-batches (up to pp of them, by chunks); stage s receives
// a micro-batch's hidden states from stage s - 1, runs its layers and sends them on
// asynchronously, so stages work on different micro-batches at once. PipelineStats measures the
// bubble: the share of a step a rank spends waiting rather than computing.
//
// Any communicator error (a dead rank, a timeout) is returned as is: the replica is then broken
// and must be rebuilt; the runner remembers the first one (failure()), so its host can stop
// advertising the replica.
//
// Idle replicas: a follower waits in the leader's next step broadcast for as long as its world
// communicator allows. A replica that may idle (a served one, unlike a batch run) gives its
// followers a world communicator without an operation timeout (comm::UcxOptions::timeout =
// absl::InfiniteDuration()): an idle follower then waits for the next step indefinitely, yet still
// fails at once when a peer dies (UNAVAILABLE) or when the leader, whose communicator keeps a
// finite timeout, fails and tells its peers (a hung step is bounded by the leader's timeout). The
// leader is in no communicator call between steps, so it needs no keep-alive.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "runtime/comm/communicator.h"
#include "runtime/engine/cpu_shard_executor.h"
#include "runtime/engine/model_runner.h"

namespace rackserve::engine {

struct PipelineStats {
  int64_t steps = 0;
  double step_seconds = 0;     // wall time of the rank's part of each step
  double compute_seconds = 0;  // time in its own layers, embedding and head
  // Fraction of step time spent waiting on other ranks (pipeline bubble and transfers).
  double bubble() const { return step_seconds > 0 ? 1.0 - compute_seconds / step_seconds : 0.0; }
};

// One rank's part of a step on the given chunks (every rank of the replica calls it with the same
// chunks). On the leader, `logits` receives [sampling chunks, vocab]; elsewhere it is untouched.
absl::Status RunRankStep(std::span<const BatchChunk> chunks, CpuShardExecutor& executor,
                         comm::Communicator& world, std::vector<float>* logits,
                         PipelineStats* stats);

// A follower rank's loop: runs every step the leader broadcasts until the leader shuts down
// (returns OK) or a communicator error (returned).
absl::Status RunFollower(comm::Communicator& world, CpuShardExecutor& executor,
                         PipelineStats* stats);

class DistributedModelRunner : public ModelRunner {
 public:
  // `world` is the replica's communicator (rank 0 = this leader); both must outlive the runner.
  DistributedModelRunner(comm::Communicator* world, std::unique_ptr<CpuShardExecutor> executor);
  // Shuts the followers down if Shutdown() was not called.
  ~DistributedModelRunner() override;

  const model::ModelConfig& config() const override { return executor_->config(); }
  absl::Status Forward(std::span<const BatchChunk> chunks, std::vector<float>* logits) override;
  // Tells the followers to return from RunFollower. Idempotent.
  absl::Status Shutdown();
  const PipelineStats& stats() const { return stats_; }
  // OK until a step failed; then that step's error (the replica is broken). Any thread.
  absl::Status failure() const;

 private:
  // Records the first failed step's status; returns `status`.
  absl::Status Record(absl::Status status);

  comm::Communicator* world_;
  std::unique_ptr<CpuShardExecutor> executor_;
  PipelineStats stats_;
  bool shut_down_ = false;
  mutable absl::Mutex failure_mu_;
  absl::Status failure_ ABSL_GUARDED_BY(failure_mu_);
};

}  // namespace rackserve::engine
