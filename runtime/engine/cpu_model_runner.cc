#include "runtime/engine/cpu_model_runner.h"

#include "runtime/base/status_macros.h"

namespace rackserve::engine {

CpuModelRunner::CpuModelRunner(std::unique_ptr<CpuShardExecutor> executor)
    : executor_(std::move(executor)) {
  RS_CHECK(executor_->plan().world.size() == 1);
}

absl::Status CpuModelRunner::Forward(std::span<const BatchChunk> chunks,
                                     std::vector<float>* logits) {
  RS_RETURN_IF_ERROR(executor_->Validate(chunks));
  RS_RETURN_IF_ERROR(executor_->Embed(chunks, &hidden_));
  RS_RETURN_IF_ERROR(executor_->RunLayers(chunks, &hidden_));
  return executor_->Head(chunks, hidden_, logits);
}

}  // namespace rackserve::engine
