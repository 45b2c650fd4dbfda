// CpuModelRunner: the Llama forward pass on the CPU ops (kernels/cpu), FP4 weights dequantized on
// the fly, float32 activations and a float32 paged KV cache of its own.
//
// Per decoder layer: RMSNorm (fused with the residual add) -> q/k/v FP4 linears -> RoPE ->
// KV write -> paged GQA attention -> o linear -> RMSNorm + residual -> gate/up linears ->
// SiLU * up -> down linear; then the final norm and the LM head for sampling rows only.
// Every token's row is computed in the same order whatever else is in the batch, so results do not
// depend on batch composition or chunking.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/base/thread_pool.h"
#include "runtime/engine/model_runner.h"
#include "runtime/kv/kv_cache_config.h"
#include "runtime/model/llama_weights.h"

namespace rackserve::engine {

class CpuModelRunner : public ModelRunner {
 public:
  // Allocates the KV cache for kv.num_blocks blocks (memory is committed lazily as it is used).
  // `pool` (may be nullptr) must outlive the runner.
  static absl::StatusOr<std::unique_ptr<CpuModelRunner>> Create(
      std::shared_ptr<const model::LlamaWeights> weights, const kv::KvCacheConfig& kv,
      base::ThreadPool* pool);

  // Bytes of KV cache one token takes in this runner (keys and values of every layer, float32).
  static int64_t KvBytesPerToken(const model::ModelConfig& config);

  const model::ModelConfig& config() const override { return weights_->config; }
  absl::Status Forward(std::span<const BatchChunk> chunks, std::vector<float>* logits) override;

 private:
  CpuModelRunner(std::shared_ptr<const model::LlamaWeights> weights, const kv::KvCacheConfig& kv,
                 base::ThreadPool* pool);
  absl::Status ValidateChunks(std::span<const BatchChunk> chunks) const;
  // Resizes the activation buffers for `tokens` rows.
  void Reserve(int64_t tokens);

  std::shared_ptr<const model::LlamaWeights> weights_;
  kv::KvCacheConfig kv_;
  base::ThreadPool* pool_;
  std::vector<float> inv_freq_;                 // [head_dim / 2]
  std::vector<std::unique_ptr<float[]>> k_cache_;  // per layer [blocks, block, kv_heads, head_dim]
  std::vector<std::unique_ptr<float[]>> v_cache_;

  // Activations, reused across steps: [tokens, width].
  std::vector<float> residual_, normed_, q_, k_, v_, attn_, proj_, gate_, up_, act_;
};

}  // namespace rackserve::engine
