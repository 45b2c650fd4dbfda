// LlamaShard: the weights one rank of a TP x PP replica holds, loaded straight from a model
// directory (see ShardPlan for what is split how).
//
// Shapes are local to the plan (q_size_local = num_q_heads * head_dim, kv_size_local =
// num_kv_heads * head_dim); every FP4 matrix is bit-identical to the matching slice of the
// matrix model::LoadLlamaWeights loads for the whole model:
//   embed_tokens  float [vocab_size, hidden]  vocabulary rows vocab_begin..; first stage only
//   layers        plan.layers.size() entries, local layer i is global layer layers.begin + i:
//     q_proj            [q_size_local, hidden]    rows (column-parallel)
//     k_proj, v_proj    [kv_size_local, hidden]   rows (column-parallel, maybe replicated)
//     o_proj            [hidden, q_size_local]    columns (row-parallel: partial sums)
//     gate/up_proj      [ffn_size, hidden]        rows (column-parallel)
//     down_proj         [hidden, ffn_size]        columns (row-parallel: partial sums)
//     input_norm, post_attention_norm  full [hidden]
//   final_norm    float [hidden]; last stage only
//   lm_head       float [vocab_size, hidden] vocabulary rows vocab_begin..; last stage only (the
//                 embedding's rows when the model ties them)
// Tensors a rank does not hold are empty. LlamaShard is an immutable value once loaded; share it
// read-only across threads.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/llama_weights.h"
#include "runtime/model/model_config.h"
#include "runtime/parallel/shard_plan.h"

namespace rackserve::parallel {

struct LlamaShard {
  model::ModelConfig config;  // the FULL model's config
  ShardPlan plan;
  std::vector<float> embed_tokens;               // [plan.vocab_size, hidden]; first stage only
  std::vector<model::LlamaLayerWeights> layers;  // the stage's layers, local shapes (above)
  std::vector<float> final_norm;                 // [hidden]; last stage only
  std::vector<float> lm_head;                    // [plan.vocab_size, hidden]; last stage only
};

// Loads `plan`'s shard of the model in `dir` (the layout model::LoadLlamaWeights reads).
// Layers outside the plan's stage, and the embedding / final norm / LM head of stages that do not
// hold them, are not read at all.
//   NVFP4 (ModelOpt) linears: only the slice's bytes are copied out of the memory-mapped tensors
//     (row slices are contiguous ranges, column slices one range per row).
//   bf16/fp16/fp32 linears: the FULL tensor is read and quantized to options.quantize_format,
//     then sliced, so that the NVFP4 per-tensor scale (from the whole tensor's amax) is the one
//     an unsharded load computes; each TP rank repeats that quantization for its stage's layers.
// Errors as model::LoadLlamaWeights (naming the file and the tensor), and INVALID_ARGUMENT when
// the plan's ranges do not fit the model's config.json, or a column slice does not fall on the
// FP4 blocks of the loaded format (a plan made for another fp4_block).
absl::StatusOr<LlamaShard> LoadLlamaShard(const std::string& dir, const ShardPlan& plan,
                                          const model::LoadOptions& options);

}  // namespace rackserve::parallel
