// LlamaWeights: the weights of a Llama-family model held in host memory, ready for the CPU ops.
//
// Decoder linear layers are FP4 (numerics::Fp4Matrix, NVFP4 or MXFP4); norms, the embedding and the
// LM head are float32. A checkpoint directory (Hugging Face layout, see DESIGN.md) is read either
// as already-NVFP4 (ModelOpt layout, kept bit for bit) or as bf16/fp16/fp32 and quantized at load.
// LlamaWeights is an immutable value once loaded; share it read-only across threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/base/thread_pool.h"
#include "runtime/model/model_config.h"
#include "runtime/numerics/fp4_matrix.h"

namespace rackserve::model {

// The seven linear layers of a decoder layer, by their Hugging Face module suffix.
inline constexpr std::array<std::string_view, 7> kLlamaLinearModules = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

// "model.layers.<layer>.<suffix>"
std::string LayerModuleName(int64_t layer, std::string_view suffix);

struct LinearShape {
  int64_t rows = 0;  // output features
  int64_t cols = 0;  // input features
};
// Shape of linear `suffix` (one of kLlamaLinearModules) under `config`.
LinearShape LlamaLinearShape(const ModelConfig& config, std::string_view suffix);

struct LlamaLayerWeights {
  std::vector<float> input_norm;           // [hidden]
  std::vector<float> post_attention_norm;  // [hidden]
  // In kLlamaLinearModules order: q [q_size, hidden], k/v [kv_size, hidden], o [hidden, q_size],
  // gate/up [ffn, hidden], down [hidden, ffn].
  std::array<numerics::Fp4Matrix, 7> linears;

  const numerics::Fp4Matrix& q_proj() const { return linears[0]; }
  const numerics::Fp4Matrix& k_proj() const { return linears[1]; }
  const numerics::Fp4Matrix& v_proj() const { return linears[2]; }
  const numerics::Fp4Matrix& o_proj() const { return linears[3]; }
  const numerics::Fp4Matrix& gate_proj() const { return linears[4]; }
  const numerics::Fp4Matrix& up_proj() const { return linears[5]; }
  const numerics::Fp4Matrix& down_proj() const { return linears[6]; }
};

struct LlamaWeights {
  ModelConfig config;
  std::vector<float> embed_tokens;  // [vocab, hidden]
  std::vector<LlamaLayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab, hidden]; empty when tie_word_embeddings

  // The LM head matrix [vocab, hidden] (the embedding when tied).
  const std::vector<float>& lm_head_matrix() const {
    return config.tie_word_embeddings ? embed_tokens : lm_head;
  }
};

struct LoadOptions {
  // Format that bf16/fp16/fp32 linear weights are quantized to at load. Linears already stored
  // as NVFP4 are kept as they are.
  numerics::Fp4Format quantize_format = numerics::Fp4Format::kNvfp4;
  // Threads used to quantize at load; nullptr runs on the caller.
  base::ThreadPool* pool = nullptr;
};

// Loads `dir` (config.json, optional hf_quant_config.json, model.safetensors or a sharded index).
// Errors name the file and the tensor: NOT_FOUND for a missing file or tensor, INVALID_ARGUMENT for
// a wrong dtype or shape or an unsupported config, DATA_LOSS for a corrupt file.
absl::StatusOr<LlamaWeights> LoadLlamaWeights(const std::string& dir, const LoadOptions& options);

}  // namespace rackserve::model
