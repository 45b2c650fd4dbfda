// CpuShardExecutor: one rank's part of the Llama forward pass on the CPU ops (kernels/cpu) —
// the layers of its pipeline stage, its tensor-parallel slice of heads, FFN columns and
// vocabulary — with its own float32 paged KV cache for those layers and KV heads.
//
// Tensor parallelism is Megatron-style: q/k/v and gate/up hold row slices (local heads and FFN
// columns), o and down hold column slices whose partial products are summed across the TP group
// (`tp` communicator); the embedding and LM head hold vocabulary rows (embedding rows summed,
// logits gathered). Every rank of a TP group ends each layer with bitwise-identical activations.
// With tp == 1 and one stage (a trivial shard) it is the whole model in one process.
//
// Per decoder layer: RMSNorm (fused with the residual add) -> q/k/v FP4 linears -> RoPE ->
// KV write -> paged GQA attention -> o linear (+ all-reduce) -> RMSNorm + residual ->
// gate/up linears -> SiLU * up -> down linear (+ all-reduce). Each token's row is computed in
// the same order whatever else is in the batch, so results do not depend on batching or chunking.
// Used by one thread at a time.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/base/thread_pool.h"
#include "runtime/comm/communicator.h"
#include "runtime/engine/model_runner.h"
#include "runtime/kv/kv_cache_config.h"
#include "runtime/parallel/llama_shard.h"

namespace rackserve::engine {

class CpuShardExecutor {
 public:
  // `pool` (may be nullptr) and `tp` (required when the shard's tp > 1, else ignored) must
  // outlive the executor. The KV cache holds kv.num_blocks blocks for the local layers.
  static absl::StatusOr<std::unique_ptr<CpuShardExecutor>> Create(
      std::shared_ptr<const parallel::LlamaShard> shard, const kv::KvCacheConfig& kv,
      base::ThreadPool* pool, comm::Communicator* tp);

  // Bytes of KV cache one token takes for the whole model (every layer and KV head, float32);
  // replicas size their block count from it so that every rank agrees on it.
  static int64_t KvBytesPerToken(const model::ModelConfig& config);

  const model::ModelConfig& config() const { return shard_->config; }
  const parallel::ShardPlan& plan() const { return shard_->plan; }

  // INVALID_ARGUMENT for chunks outside the context, tokens outside the vocabulary, block ids
  // outside the cache or block tables too short.
  absl::Status Validate(std::span<const BatchChunk> chunks) const;
  // First stage: hidden [tokens, hidden] = embeddings of the chunks' tokens.
  absl::Status Embed(std::span<const BatchChunk> chunks, std::vector<float>* hidden);
  // Runs the stage's layers on the residual stream hidden [tokens, hidden] in place, writing the
  // chunks' keys and values into the cache.
  absl::Status RunLayers(std::span<const BatchChunk> chunks, std::vector<float>* hidden);
  // Last stage: logits [sampling chunks, vocab] (the whole vocabulary on every TP rank) from the
  // final residual stream.
  absl::Status Head(std::span<const BatchChunk> chunks, const std::vector<float>& hidden,
                    std::vector<float>* logits);

 private:
  CpuShardExecutor(std::shared_ptr<const parallel::LlamaShard> shard, const kv::KvCacheConfig& kv,
                   base::ThreadPool* pool, comm::Communicator* tp);
  // Sums a partial product across the TP group (no-op for tp == 1).
  absl::Status ReduceAcrossTp(float* data, int64_t count);
  void Reserve(int64_t tokens);

  std::shared_ptr<const parallel::LlamaShard> shard_;
  kv::KvCacheConfig kv_;
  base::ThreadPool* pool_;
  comm::Communicator* tp_;                         // nullptr when tp == 1
  std::vector<float> inv_freq_;                    // [head_dim / 2]
  std::vector<std::unique_ptr<float[]>> k_cache_;  // per local layer [blocks, block, kv_heads, dim]
  std::vector<std::unique_ptr<float[]>> v_cache_;

  // Activations, reused across steps: [tokens, local width].
  std::vector<float> normed_, q_, k_, v_, attn_, proj_, gate_, up_, act_;
};

}  // namespace rackserve::engine
