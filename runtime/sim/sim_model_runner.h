// SimModelRunner: a simulated GPU behind the engine's ModelRunner contract. It computes nothing:
// each step it charges the StepTimeModel's time for the batch and returns pseudo tokens.
//
// Tokens (ProducesTokens() is true; Forward is FAILED_PRECONDITION): the token after a sampling
// chunk is a hash of (the chunk's last token, the new token's position) mapped into [0, vocab),
// never one of the model's EOS ids (EOS is not modeled: requests end by max_new_tokens, stop ids
// or cancellation). So a sequence's continuation depends only on its prompt's last token and
// length, whatever it is batched with, and a preempted sequence recomputes the same tokens.
//
// Time, per ClockMode:
//   kVirtual   ForwardTokens returns at once; the device clock advances by the step time.
//   kRealTime  the device keeps an absolute cursor: end = max(now, previous end) + step time, and
//              ForwardTokens sleeps until `end`, so host work between steps overlaps with the
//              modeled device time instead of adding to it.
// device_seconds() is the sum of the modeled step times (idle gaps between steps excluded).
// Thread-safety: none; one thread (the engine's step loop) uses a runner.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/engine/model_runner.h"
#include "runtime/kv/kv_cache_config.h"
#include "runtime/model/model_config.h"
#include "runtime/sim/step_time_model.h"

namespace rackserve::sim {

enum class ClockMode {
  kVirtual,   // no sleeping: for calibration, tests and benchmarks
  kRealTime,  // paced to the modeled device time: for workers serving traffic
};

class SimModelRunner : public engine::ModelRunner {
 public:
  // `kv` is the engine's KV cache configuration (block tables are checked against it). Each
  // modeled step takes StepTimeModel's time / speedup. INVALID_ARGUMENT from
  // StepTimeModel::Create, or for a speedup that is not a positive finite number.
  static absl::StatusOr<std::unique_ptr<SimModelRunner>> Create(const model::ModelConfig& config,
                                                                const GpuProfile& profile,
                                                                const kv::KvCacheConfig& kv,
                                                                ClockMode clock,
                                                                double speedup = 1.0);

  const model::ModelConfig& config() const override { return config_; }
  bool ProducesTokens() const override { return true; }
  // FAILED_PRECONDITION: a simulated device has no logits.
  absl::Status Forward(std::span<const engine::BatchChunk> chunks,
                       std::vector<float>* logits) override;
  // INVALID_ARGUMENT for a malformed batch (empty chunk, token outside the vocabulary, a block
  // table shorter than the chunk's positions, a block id outside the cache among the blocks the
  // chunk writes).
  absl::Status ForwardTokens(std::span<const engine::BatchChunk> chunks,
                             std::vector<int32_t>* tokens) override;

  // The token the simulated model emits after `last_token` for position `position` (exposed for
  // tests and tools that replay a run).
  int32_t PseudoToken(int32_t last_token, int64_t position) const;

  const StepTimeModel& time_model() const { return time_model_; }
  ClockMode clock() const { return clock_; }
  double device_seconds() const { return device_seconds_; }  // modeled busy time so far
  int64_t num_steps() const { return num_steps_; }
  const StepTime& last_step() const { return last_step_; }  // before the speedup

 private:
  SimModelRunner(const model::ModelConfig& config, StepTimeModel time_model,
                 const kv::KvCacheConfig& kv, ClockMode clock, double speedup);
  absl::Status CheckChunk(size_t index, const engine::BatchChunk& chunk) const;

  const model::ModelConfig config_;
  const StepTimeModel time_model_;
  const kv::KvCacheConfig kv_;
  const ClockMode clock_;
  const double speedup_;
  std::vector<ChunkShape> shapes_;  // scratch, reused across steps
  double device_seconds_ = 0;
  int64_t num_steps_ = 0;
  StepTime last_step_;
  std::chrono::steady_clock::time_point device_end_;  // kRealTime: when the last step ends
};

}  // namespace rackserve::sim
