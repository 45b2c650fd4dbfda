#include "runtime/sim/sim_model_runner.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/sampling/counter_rng.h"

namespace rackserve::sim {
namespace {

// Seed of the pseudo-token hash; any constant works, this one only has to stay fixed.
constexpr uint64_t kTokenSeed = 0x5EED'7043'11AA'0001ull;

}  // namespace

absl::StatusOr<std::unique_ptr<SimModelRunner>> SimModelRunner::Create(
    const model::ModelConfig& config, const GpuProfile& profile, const kv::KvCacheConfig& kv,
    ClockMode clock, double speedup) {
  RS_ASSIGN_OR_RETURN(StepTimeModel time_model, StepTimeModel::Create(config, profile));
  if (!(speedup > 0) || !std::isfinite(speedup)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim speedup must be a positive finite number, got ", speedup));
  }
  return std::unique_ptr<SimModelRunner>(
      new SimModelRunner(config, std::move(time_model), kv, clock, speedup));
}

SimModelRunner::SimModelRunner(const model::ModelConfig& config, StepTimeModel time_model,
                               const kv::KvCacheConfig& kv, ClockMode clock, double speedup)
    : config_(config),
      time_model_(std::move(time_model)),
      kv_(kv),
      clock_(clock),
      speedup_(speedup),
      device_end_(std::chrono::steady_clock::now()) {}

absl::Status SimModelRunner::Forward(std::span<const engine::BatchChunk> /*chunks*/,
                                     std::vector<float>* /*logits*/) {
  return absl::FailedPreconditionError(
      "simulated GPU runner produces tokens, not logits: call ForwardTokens");
}

int32_t SimModelRunner::PseudoToken(int32_t last_token, int64_t position) const {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(last_token)) << 40) ^
                       static_cast<uint64_t>(position);
  const auto vocab = static_cast<uint64_t>(config_.vocab_size);
  auto token = static_cast<int32_t>(sampling::CounterHash(kTokenSeed, key) % vocab);
  // Skip EOS ids (at most a handful): step to the next id until the token is not one.
  while (std::find(config_.eos_token_ids.begin(), config_.eos_token_ids.end(), token) !=
         config_.eos_token_ids.end()) {
    token = static_cast<int32_t>((static_cast<uint64_t>(token) + 1) % vocab);
  }
  return token;
}

absl::Status SimModelRunner::CheckChunk(size_t index, const engine::BatchChunk& chunk) const {
  if (chunk.tokens.empty() || chunk.start < 0) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", index, ": ", chunk.tokens.size(),
                                                   " tokens at start ", chunk.start,
                                                   " (needs >= 1 token, start >= 0)"));
  }
  for (size_t i = 0; i < chunk.tokens.size(); ++i) {
    const int32_t t = chunk.tokens[i];
    if (t < 0 || t >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", index, ": token[", i, "] = ", t,
                                                     " is outside the vocabulary [0, ",
                                                     config_.vocab_size, ")"));
    }
  }
  const int64_t end = chunk.start + static_cast<int64_t>(chunk.tokens.size());
  const int64_t needed = kv_.BlocksFor(end);
  if (static_cast<int64_t>(chunk.block_table.size()) < needed) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", index, ": block_table has ",
                                                   chunk.block_table.size(), " blocks, positions ",
                                                   "[0, ", end, ") need ", needed));
  }
  // Only the blocks whose first position this chunk writes: a block's later positions follow its
  // first into the same block (a sequence's blocks change only by preemption, whose recompute
  // starts again at position 0), so each block is checked once, not at every decode step.
  for (int64_t b = (chunk.start + kv_.block_size - 1) / kv_.block_size; b < needed; ++b) {
    const int32_t block = chunk.block_table[b];
    if (block < 0 || block >= kv_.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", index, ": block_table[", b,
                                                     "] = ", block, " is outside the cache [0, ",
                                                     kv_.num_blocks, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status SimModelRunner::ForwardTokens(std::span<const engine::BatchChunk> chunks,
                                           std::vector<int32_t>* tokens) {
  tokens->clear();
  shapes_.clear();
  for (size_t i = 0; i < chunks.size(); ++i) {
    RS_RETURN_IF_ERROR(CheckChunk(i, chunks[i]));
  }
  for (const engine::BatchChunk& chunk : chunks) {
    const auto count = static_cast<int64_t>(chunk.tokens.size());
    shapes_.push_back({chunk.start, count, chunk.samples});
    if (chunk.samples) tokens->push_back(PseudoToken(chunk.tokens.back(), chunk.start + count));
  }
  last_step_ = time_model_.Estimate(shapes_);
  const double step_s = last_step_.total_s / speedup_;
  device_seconds_ += step_s;
  ++num_steps_;
  if (clock_ == ClockMode::kRealTime && !chunks.empty()) {
    const auto now = std::chrono::steady_clock::now();
    device_end_ = std::max(now, device_end_) +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(step_s));
    std::this_thread::sleep_until(device_end_);
  }
  return absl::OkStatus();
}

}  // namespace rackserve::sim
