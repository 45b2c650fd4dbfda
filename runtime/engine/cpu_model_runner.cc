#include "runtime/engine/cpu_model_runner.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/dense_linear.h"
#include "kernels/cpu/embedding_gather.h"
#include "kernels/cpu/fp4_linear.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/silu_mul.h"
#include "kernels/cpu/write_kv.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/rope_frequencies.h"

namespace rackserve::engine {

namespace cpu = kernels::cpu;

int64_t CpuModelRunner::KvBytesPerToken(const model::ModelConfig& c) {
  return 2 * c.num_hidden_layers * c.kv_size() * static_cast<int64_t>(sizeof(float));
}

absl::StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(
    std::shared_ptr<const model::LlamaWeights> weights, const kv::KvCacheConfig& kv,
    base::ThreadPool* pool) {
  if (weights == nullptr) return absl::InvalidArgumentError("CpuModelRunner: weights is null");
  RS_RETURN_IF_ERROR(weights->config.Validate());
  return std::unique_ptr<CpuModelRunner>(new CpuModelRunner(std::move(weights), kv, pool));
}

CpuModelRunner::CpuModelRunner(std::shared_ptr<const model::LlamaWeights> weights,
                               const kv::KvCacheConfig& kv, base::ThreadPool* pool)
    : weights_(std::move(weights)), kv_(kv), pool_(pool) {
  const model::ModelConfig& c = weights_->config;
  for (double f : model::RopeInvFrequencies(c)) inv_freq_.push_back(static_cast<float>(f));
  const int64_t layer_floats = kv_.num_blocks * kv_.block_size * c.kv_size();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    // Default-initialized: pages are committed by the OS only when first written.
    k_cache_.emplace_back(new float[layer_floats]);
    v_cache_.emplace_back(new float[layer_floats]);
  }
}

absl::Status CpuModelRunner::ValidateChunks(std::span<const BatchChunk> chunks) const {
  const int64_t max_pos = config().max_position_embeddings;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const BatchChunk& chunk = chunks[c];
    const int64_t end = chunk.start + static_cast<int64_t>(chunk.tokens.size());
    if (chunk.tokens.empty() || chunk.start < 0 || end > max_pos) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", c, ": positions [", chunk.start,
                                                     ", ", end, ") outside the context [0, ",
                                                     max_pos, ")"));
    }
    if (static_cast<int64_t>(chunk.block_table.size()) < kv_.BlocksFor(end)) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", c, ": block table has ",
                                                     chunk.block_table.size(), " blocks, ",
                                                     kv_.BlocksFor(end), " needed"));
    }
    for (int32_t b : chunk.block_table) {
      if (b < 0 || b >= kv_.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("chunk ", c, ": block id ", b,
                                                       " outside the cache [0, ", kv_.num_blocks,
                                                       ")"));
      }
    }
  }
  return absl::OkStatus();
}

void CpuModelRunner::Reserve(int64_t tokens) {
  const model::ModelConfig& c = config();
  residual_.resize(tokens * c.hidden_size);
  normed_.resize(tokens * c.hidden_size);
  q_.resize(tokens * c.q_size());
  k_.resize(tokens * c.kv_size());
  v_.resize(tokens * c.kv_size());
  attn_.resize(tokens * c.q_size());
  proj_.resize(tokens * c.hidden_size);
  gate_.resize(tokens * c.intermediate_size);
  up_.resize(tokens * c.intermediate_size);
  act_.resize(tokens * c.intermediate_size);
}

absl::Status CpuModelRunner::Forward(std::span<const BatchChunk> chunks,
                                     std::vector<float>* logits) {
  RS_RETURN_IF_ERROR(ValidateChunks(chunks));
  const model::ModelConfig& c = config();
  const model::LlamaWeights& w = *weights_;
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Flatten the chunks: token ids, positions, KV slots, attention chunk bounds.
  std::vector<int32_t> ids;
  std::vector<int64_t> positions, slots, query_begin{0}, context_len;
  std::vector<const int32_t*> tables;
  std::vector<int64_t> sample_rows;
  for (const BatchChunk& chunk : chunks) {
    for (size_t i = 0; i < chunk.tokens.size(); ++i) {
      const int64_t pos = chunk.start + static_cast<int64_t>(i);
      ids.push_back(chunk.tokens[i]);
      positions.push_back(pos);
      slots.push_back(static_cast<int64_t>(chunk.block_table[pos / kv_.block_size]) *
                          kv_.block_size +
                      pos % kv_.block_size);
    }
    query_begin.push_back(static_cast<int64_t>(ids.size()));
    context_len.push_back(chunk.start + static_cast<int64_t>(chunk.tokens.size()));
    tables.push_back(chunk.block_table.data());
    if (chunk.samples) sample_rows.push_back(query_begin.back() - 1);
  }
  const int64_t T = static_cast<int64_t>(ids.size());
  Reserve(T);

  RS_RETURN_IF_ERROR(cpu::EmbeddingGather(w.embed_tokens.data(), c.vocab_size, H, ids.data(), T,
                                          residual_.data()));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const model::LlamaLayerWeights& layer = w.layers[l];
    if (l == 0) {
      RS_RETURN_IF_ERROR(cpu::RmsNorm(residual_.data(), layer.input_norm.data(), T, H, eps,
                                      normed_.data()));
    } else {
      RS_RETURN_IF_ERROR(cpu::AddRmsNorm(residual_.data(), proj_.data(), layer.input_norm.data(),
                                         T, H, eps, normed_.data()));
    }
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.q_proj(), normed_.data(), T, q_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.k_proj(), normed_.data(), T, k_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.v_proj(), normed_.data(), T, v_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::ApplyRope(q_.data(), T, c.num_attention_heads, c.head_dim,
                                      positions.data(), inv_freq_.data()));
    RS_RETURN_IF_ERROR(cpu::ApplyRope(k_.data(), T, c.num_key_value_heads, c.head_dim,
                                      positions.data(), inv_freq_.data()));

    const cpu::PagedKvLayer cache{k_cache_[l].get(), v_cache_[l].get(), kv_.num_blocks,
                                  kv_.block_size,    c.num_key_value_heads, c.head_dim};
    RS_RETURN_IF_ERROR(cpu::WriteKv(cache, k_.data(), v_.data(), slots.data(), T));
    cpu::PagedAttentionParams attention{};
    attention.q = q_.data();
    attention.out = attn_.data();
    attention.num_heads = c.num_attention_heads;
    attention.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    attention.cache = cache;
    attention.num_chunks = static_cast<int64_t>(chunks.size());
    attention.query_begin = query_begin.data();
    attention.context_len = context_len.data();
    attention.block_tables = tables.data();
    RS_RETURN_IF_ERROR(cpu::PagedAttention(attention, pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.o_proj(), attn_.data(), T, proj_.data(), pool_));

    RS_RETURN_IF_ERROR(cpu::AddRmsNorm(residual_.data(), proj_.data(),
                                       layer.post_attention_norm.data(), T, H, eps,
                                       normed_.data()));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.gate_proj(), normed_.data(), T, gate_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.up_proj(), normed_.data(), T, up_.data(), pool_));
    RS_RETURN_IF_ERROR(
        cpu::SiluMul(gate_.data(), up_.data(), T, c.intermediate_size, act_.data()));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.down_proj(), act_.data(), T, proj_.data(), pool_));
  }

  // Final norm and LM head for the sampling rows only.
  const int64_t S = static_cast<int64_t>(sample_rows.size());
  std::vector<float> last(S * H);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t row = sample_rows[s];
    RS_RETURN_IF_ERROR(cpu::AddRmsNorm(residual_.data() + row * H, proj_.data() + row * H,
                                       w.final_norm.data(), 1, H, eps, last.data() + s * H));
  }
  logits->resize(S * c.vocab_size);
  return cpu::DenseLinear(w.lm_head_matrix().data(), c.vocab_size, H, last.data(), S,
                          logits->data(), pool_);
}

}  // namespace rackserve::engine
