// CpuModelRunner: the ModelRunner of a replica that is one process — the whole model (a trivial
// shard: tp 1, one pipeline stage) on a CpuShardExecutor.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "runtime/engine/cpu_shard_executor.h"
#include "runtime/engine/model_runner.h"

namespace rackserve::engine {

class CpuModelRunner : public ModelRunner {
 public:
  // Precondition: `executor` runs a tp 1, pp 1 shard.
  explicit CpuModelRunner(std::unique_ptr<CpuShardExecutor> executor);

  const model::ModelConfig& config() const override { return executor_->config(); }
  absl::Status Forward(std::span<const BatchChunk> chunks, std::vector<float>* logits) override;

 private:
  std::unique_ptr<CpuShardExecutor> executor_;
  std::vector<float> hidden_;  // [tokens, hidden], reused across steps
};

}  // namespace rackserve::engine
