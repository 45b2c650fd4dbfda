// Fault injection for the worker tests: a ModelRunner that runs a real CPU runner but fails its
// fail_at-th Forward (and every later one) with INTERNAL, as a crashed backend would, and a
// ReplicaHost whose engine runs on it. Header-only: the tests link rackserve_worker already.
// A test that submits several requests and needs them all in the batch before the failure holds
// the first Forward until it has submitted them (`release_first`): the count of forward passes
// then does not depend on how soon the test's thread gets a CPU.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "runtime/base/status_macros.h"
#include "runtime/engine/cpu_model_runner.h"
#include "runtime/engine/engine.h"
#include "runtime/parallel/world_config.h"
#include "worker/replica_host.h"

namespace rackserve::worker::testing {

// Not thread-safe (the engine's step thread is its only caller).
class FailingRunner : public engine::ModelRunner {
 public:
  // Precondition: fail_at >= 1. `release_first`, when given, must outlive the runner: the first
  // Forward waits for it.
  FailingRunner(std::unique_ptr<engine::ModelRunner> inner, int fail_at,
                absl::Notification* release_first)
      : inner_(std::move(inner)), fail_at_(fail_at), release_first_(release_first) {}

  const model::ModelConfig& config() const override { return inner_->config(); }
  absl::Status Forward(std::span<const engine::BatchChunk> chunks,
                       std::vector<float>* logits) override {
    if (++calls_ == 1 && release_first_ != nullptr) release_first_->WaitForNotification();
    if (calls_ >= fail_at_) {
      return absl::InternalError(absl::StrCat("injected failure of forward pass ", calls_));
    }
    return inner_->Forward(chunks, logits);
  }

 private:
  std::unique_ptr<engine::ModelRunner> inner_;
  const int fail_at_;
  absl::Notification* const release_first_;
  int calls_ = 0;
};

// A ReplicaHost `replica_id` serving `model_dir` whose engine fails on its fail_at-th forward pass
// (the first one held until `release_first` is notified, when given).
inline absl::StatusOr<std::unique_ptr<ReplicaHost>> LoadFailingHost(
    std::string replica_id, const std::string& model_dir, int fail_at,
    const engine::EngineOptions& options, absl::Notification* release_first = nullptr) {
  RS_ASSIGN_OR_RETURN(const parallel::WorldConfig world, parallel::WorldConfig::Create(1, 1, 0));
  auto pool = std::make_unique<base::ThreadPool>(options.num_threads);
  RS_ASSIGN_OR_RETURN(engine::LoadedShard shard,
                      engine::LoadCpuShard(model_dir, world, {}, options, pool.get(), nullptr));
  auto runner = std::make_unique<FailingRunner>(
      std::make_unique<engine::CpuModelRunner>(std::move(shard.executor)), fail_at, release_first);
  RS_ASSIGN_OR_RETURN(
      std::unique_ptr<engine::Engine> engine,
      engine::Engine::Create(std::move(runner), shard.kv, options, std::move(pool)));
  return std::make_unique<ReplicaHost>(std::move(replica_id), std::move(engine));
}

}  // namespace rackserve::worker::testing
