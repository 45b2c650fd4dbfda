// ShardPlan: which part of a Llama model one rank of a TP x PP replica holds, Megatron-style.
//
// Pipeline parallelism splits the decoder layers into pp contiguous stages. Tensor parallelism
// splits, within a stage, each of these into tp contiguous ranges (rank t holds range t):
//   query heads          q_proj rows, o_proj columns (its output is summed across the TP group)
//   key/value heads      k_proj/v_proj rows; when tp > num_key_value_heads each kv head is
//                        replicated on the tp / kv_heads consecutive ranks whose query heads use it
//   FFN columns          gate_proj/up_proj rows, down_proj columns (summed across the TP group)
//   vocabulary rows      embedding and LM head rows (embeddings summed, logits gathered)
// Norms are replicated. Row-parallel linears (o_proj, down_proj) are split along their input
// dimension, which is the FP4 block dimension: a rank's share must be a whole number of blocks.
//
// Plain value types; the functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/parallel/world_config.h"

namespace rackserve::parallel {

// Global decoder layers [begin, end).
struct LayerRange {
  int64_t begin = 0;
  int64_t end = 0;

  int64_t size() const { return end - begin; }
  bool operator==(const LayerRange&) const = default;
};

// Splits num_layers over pp stages, in order. With `stage_layers` empty the split is even and
// the first num_layers % pp stages take one layer more; otherwise stage s takes stage_layers[s]
// layers. INVALID_ARGUMENT naming the value when num_layers or pp is below 1, pp > num_layers,
// stage_layers has other than pp entries, an entry is below 1, or the entries do not sum to
// num_layers.
absl::StatusOr<std::vector<LayerRange>> SplitLayers(int64_t num_layers, int pp,
                                                    std::span<const int64_t> stage_layers = {});

// What one rank holds. Heads, columns and rows are contiguous ranges of the full model's.
struct ShardPlan {
  WorldConfig world;
  LayerRange layers;         // this rank's stage's layers
  int64_t q_head_begin = 0;  // local query heads [q_head_begin, q_head_begin + num_q_heads)
  int64_t num_q_heads = 0;
  int64_t kv_head_begin = 0;  // local kv heads [kv_head_begin, kv_head_begin + num_kv_heads)
  int64_t num_kv_heads = 0;
  int64_t ffn_begin = 0;  // local intermediate (FFN) columns [ffn_begin, ffn_begin + ffn_size)
  int64_t ffn_size = 0;
  int64_t vocab_begin = 0;  // local vocabulary rows [vocab_begin, vocab_begin + vocab_size)
  int64_t vocab_size = 0;

  bool operator==(const ShardPlan&) const = default;
};

// The plan of `world`'s rank for `config`; `stage_layers` as for SplitLayers, `fp4_block` the
// elements per FP4 block scale of the weights (16 NVFP4, 32 MXFP4). INVALID_ARGUMENT naming the
// field when config or world is invalid, fp4_block is below 1, the layers cannot be split, or:
// num_attention_heads % tp != 0; neither num_key_value_heads % tp == 0 nor
// tp % num_key_value_heads == 0; intermediate_size % tp != 0; vocab_size % tp != 0; the local
// input width of o_proj (num_q_heads * head_dim) or down_proj (ffn_size) is not a multiple of
// fp4_block (block scales must not straddle ranks).
absl::StatusOr<ShardPlan> PlanShard(const model::ModelConfig& config, const WorldConfig& world,
                                    std::span<const int64_t> stage_layers, int fp4_block);

}  // namespace rackserve::parallel
