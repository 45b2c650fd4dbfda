// ModelRunner: one backend's forward pass over a batch of sequence chunks, with the KV cache it
// owns.
//
// The engine plans a step on the CPU (which sequences, which positions, which KV blocks) and hands
// the plan to a ModelRunner, which only computes: it writes the chunks' keys and values into its
// paged KV cache and returns logits for the chunks that sample. Backends: CpuModelRunner (reference
// and CPU fast path); the CUDA runner implements the same interface. A runner may instead produce
// the sampled token ids itself (ProducesTokens(): the simulated devices of runtime/sim), so that
// no [S, vocab] logits are built; the engine then skips sampling but applies stop conditions.
// A runner is used by one thread at a time (the engine's step loop).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "runtime/model/model_config.h"

namespace rackserve::engine {

// Positions [start, start + tokens.size()) of one sequence. The KV of positions [0, start) is
// already in the cache; block_table covers at least start + tokens.size() positions.
struct BatchChunk {
  std::span<const int32_t> tokens;
  int64_t start = 0;
  std::span<const int32_t> block_table;
  bool samples = false;  // return logits for the chunk's last position
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual const model::ModelConfig& config() const = 0;

  // Runs the chunks through the model. On success `logits` holds [S, vocab] float32, one row per
  // chunk with samples == true, in chunk order. INVALID_ARGUMENT for a malformed batch (a token
  // outside the vocabulary, a block id outside the cache, too few blocks).
  virtual absl::Status Forward(std::span<const BatchChunk> chunks, std::vector<float>* logits) = 0;

  // True for a runner that picks the tokens itself: the engine calls ForwardTokens instead of
  // Forward, ignores the requests' sampling parameters (stop ids, EOS and max_new_tokens still
  // apply) and refuses requests that ask for logits.
  virtual bool ProducesTokens() const { return false; }

  // For a runner with ProducesTokens(): as Forward, but on success `tokens` holds one token id in
  // [0, vocab) per chunk with samples == true, in chunk order. UNIMPLEMENTED otherwise.
  virtual absl::Status ForwardTokens(std::span<const BatchChunk> /*chunks*/,
                                     std::vector<int32_t>* /*tokens*/) {
    return absl::UnimplementedError("this model runner returns logits, not tokens (use Forward)");
  }
};

}  // namespace rackserve::engine
