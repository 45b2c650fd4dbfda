#include "runtime/engine/cpu_shard_executor.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/dense_linear.h"
#include "kernels/cpu/fp4_linear.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/silu_mul.h"
#include "kernels/cpu/write_kv.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/rope_frequencies.h"

namespace rackserve::engine {
namespace {

namespace cpu = kernels::cpu;

// The chunks laid out as rows: positions, KV slots and attention bounds per chunk.
struct FlatBatch {
  std::vector<int64_t> positions, slots, query_begin{0}, context_len;
  std::vector<const int32_t*> tables;
  std::vector<int64_t> sample_rows;  // last row of each sampling chunk
  int64_t rows() const { return static_cast<int64_t>(positions.size()); }
};

FlatBatch Flatten(std::span<const BatchChunk> chunks, int block_size) {
  FlatBatch f;
  for (const BatchChunk& chunk : chunks) {
    for (size_t i = 0; i < chunk.tokens.size(); ++i) {
      const int64_t pos = chunk.start + static_cast<int64_t>(i);
      f.positions.push_back(pos);
      f.slots.push_back(static_cast<int64_t>(chunk.block_table[pos / block_size]) * block_size +
                        pos % block_size);
    }
    f.query_begin.push_back(f.rows());
    f.context_len.push_back(chunk.start + static_cast<int64_t>(chunk.tokens.size()));
    f.tables.push_back(chunk.block_table.data());
    if (chunk.samples) f.sample_rows.push_back(f.rows() - 1);
  }
  return f;
}

}  // namespace

int64_t CpuShardExecutor::KvBytesPerToken(const model::ModelConfig& c) {
  return 2 * c.num_hidden_layers * c.kv_size() * static_cast<int64_t>(sizeof(float));
}

absl::StatusOr<std::unique_ptr<CpuShardExecutor>> CpuShardExecutor::Create(
    std::shared_ptr<const parallel::LlamaShard> shard, const kv::KvCacheConfig& kv,
    base::ThreadPool* pool, comm::Communicator* tp) {
  if (shard == nullptr) return absl::InvalidArgumentError("CpuShardExecutor: shard is null");
  RS_RETURN_IF_ERROR(shard->config.Validate());
  const int tp_size = shard->plan.world.tp;
  if (tp_size > 1 &&
      (tp == nullptr || tp->size() != tp_size || tp->rank() != shard->plan.world.tp_rank())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CpuShardExecutor: a tp ", tp_size, " shard needs a communicator of its TP group (size ",
        tp_size, ", rank ", shard->plan.world.tp_rank(), ")"));
  }
  return std::unique_ptr<CpuShardExecutor>(
      new CpuShardExecutor(std::move(shard), kv, pool, tp_size > 1 ? tp : nullptr));
}

CpuShardExecutor::CpuShardExecutor(std::shared_ptr<const parallel::LlamaShard> shard,
                                   const kv::KvCacheConfig& kv, base::ThreadPool* pool,
                                   comm::Communicator* tp)
    : shard_(std::move(shard)), kv_(kv), pool_(pool), tp_(tp) {
  for (double f : model::RopeInvFrequencies(config())) inv_freq_.push_back(static_cast<float>(f));
  const int64_t layer_floats =
      kv_.num_blocks * kv_.block_size * plan().num_kv_heads * config().head_dim;
  for (size_t l = 0; l < shard_->layers.size(); ++l) {
    // Default-initialized: pages are committed by the OS only when first written.
    k_cache_.emplace_back(new float[layer_floats]);
    v_cache_.emplace_back(new float[layer_floats]);
  }
}

absl::Status CpuShardExecutor::Validate(std::span<const BatchChunk> chunks) const {
  const int64_t max_pos = config().max_position_embeddings;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const BatchChunk& chunk = chunks[c];
    const int64_t end = chunk.start + static_cast<int64_t>(chunk.tokens.size());
    if (chunk.tokens.empty() || chunk.start < 0 || end > max_pos) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", c, ": positions [", chunk.start,
                                                     ", ", end, ") outside the context [0, ",
                                                     max_pos, ")"));
    }
    for (size_t i = 0; i < chunk.tokens.size(); ++i) {
      if (chunk.tokens[i] < 0 || chunk.tokens[i] >= config().vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "chunk ", c, ": token ", i, " = ", chunk.tokens[i], " is outside the vocabulary"));
      }
    }
    if (static_cast<int64_t>(chunk.block_table.size()) < kv_.BlocksFor(end)) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", c, ": block table has ",
                                                     chunk.block_table.size(), " blocks, ",
                                                     kv_.BlocksFor(end), " needed"));
    }
    for (int32_t b : chunk.block_table) {
      if (b < 0 || b >= kv_.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat(
            "chunk ", c, ": block id ", b, " outside the cache [0, ", kv_.num_blocks, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CpuShardExecutor::ReduceAcrossTp(float* data, int64_t count) {
  if (tp_ == nullptr) return absl::OkStatus();
  return tp_->AllReduceSum(data, count);
}

void CpuShardExecutor::Reserve(int64_t tokens) {
  const model::ModelConfig& c = config();
  const int64_t q = plan().num_q_heads * c.head_dim;
  const int64_t kv = plan().num_kv_heads * c.head_dim;
  normed_.resize(tokens * c.hidden_size);
  q_.resize(tokens * q);
  k_.resize(tokens * kv);
  v_.resize(tokens * kv);
  attn_.resize(tokens * q);
  proj_.resize(tokens * c.hidden_size);
  gate_.resize(tokens * plan().ffn_size);
  up_.resize(tokens * plan().ffn_size);
  act_.resize(tokens * plan().ffn_size);
}

absl::Status CpuShardExecutor::Embed(std::span<const BatchChunk> chunks,
                                     std::vector<float>* hidden) {
  RS_CHECK(plan().world.first_stage());
  const int64_t H = config().hidden_size;
  int64_t rows = 0;
  for (const BatchChunk& chunk : chunks) rows += static_cast<int64_t>(chunk.tokens.size());
  hidden->assign(rows * H, 0.0f);
  // This rank holds vocabulary rows [vocab_begin, vocab_begin + vocab_size); the rows of other
  // ranks' tokens stay zero here and arrive through the sum.
  int64_t row = 0;
  for (const BatchChunk& chunk : chunks) {
    for (int32_t token : chunk.tokens) {
      const int64_t local = token - plan().vocab_begin;
      if (local >= 0 && local < plan().vocab_size) {
        std::memcpy(hidden->data() + row * H, shard_->embed_tokens.data() + local * H,
                    H * sizeof(float));
      }
      ++row;
    }
  }
  return ReduceAcrossTp(hidden->data(), rows * H);
}

absl::Status CpuShardExecutor::RunLayers(std::span<const BatchChunk> chunks,
                                         std::vector<float>* hidden) {
  const model::ModelConfig& c = config();
  const FlatBatch batch = Flatten(chunks, kv_.block_size);
  const int64_t T = batch.rows();
  const int64_t H = c.hidden_size;
  if (static_cast<int64_t>(hidden->size()) != T * H) {
    return absl::InvalidArgumentError(
        absl::StrCat("RunLayers: hidden holds ", hidden->size(), " floats, expected ", T * H));
  }
  Reserve(T);
  float* residual = hidden->data();
  const float eps = static_cast<float>(c.rms_norm_eps);
  const int64_t num_q = plan().num_q_heads, num_kv = plan().num_kv_heads;
  for (size_t l = 0; l < shard_->layers.size(); ++l) {
    const model::LlamaLayerWeights& layer = shard_->layers[l];
    // The previous layer's down projection joins the residual stream inside the norm.
    if (l == 0) {
      RS_RETURN_IF_ERROR(
          cpu::RmsNorm(residual, layer.input_norm.data(), T, H, eps, normed_.data()));
    } else {
      RS_RETURN_IF_ERROR(cpu::AddRmsNorm(residual, proj_.data(), layer.input_norm.data(), T, H, eps,
                                         normed_.data()));
    }
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.q_proj(), normed_.data(), T, q_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.k_proj(), normed_.data(), T, k_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.v_proj(), normed_.data(), T, v_.data(), pool_));
    RS_RETURN_IF_ERROR(
        cpu::ApplyRope(q_.data(), T, num_q, c.head_dim, batch.positions.data(), inv_freq_.data()));
    RS_RETURN_IF_ERROR(
        cpu::ApplyRope(k_.data(), T, num_kv, c.head_dim, batch.positions.data(), inv_freq_.data()));

    const cpu::PagedKvLayer cache{
        k_cache_[l].get(), v_cache_[l].get(), kv_.num_blocks, kv_.block_size, num_kv, c.head_dim};
    RS_RETURN_IF_ERROR(cpu::WriteKv(cache, k_.data(), v_.data(), batch.slots.data(), T));
    cpu::PagedAttentionParams attention{};
    attention.q = q_.data();
    attention.out = attn_.data();
    attention.num_heads = num_q;
    attention.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    attention.cache = cache;
    attention.num_chunks = static_cast<int64_t>(chunks.size());
    attention.query_begin = batch.query_begin.data();
    attention.context_len = batch.context_len.data();
    attention.block_tables = batch.tables.data();
    RS_RETURN_IF_ERROR(cpu::PagedAttention(attention, pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.o_proj(), attn_.data(), T, proj_.data(), pool_));
    RS_RETURN_IF_ERROR(ReduceAcrossTp(proj_.data(), T * H));

    RS_RETURN_IF_ERROR(cpu::AddRmsNorm(residual, proj_.data(), layer.post_attention_norm.data(), T,
                                       H, eps, normed_.data()));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.gate_proj(), normed_.data(), T, gate_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.up_proj(), normed_.data(), T, up_.data(), pool_));
    RS_RETURN_IF_ERROR(cpu::SiluMul(gate_.data(), up_.data(), T, plan().ffn_size, act_.data()));
    RS_RETURN_IF_ERROR(cpu::Fp4Linear(layer.down_proj(), act_.data(), T, proj_.data(), pool_));
    RS_RETURN_IF_ERROR(ReduceAcrossTp(proj_.data(), T * H));
  }
  if (!shard_->layers.empty()) {
    for (int64_t i = 0; i < T * H; ++i) residual[i] += proj_[i];
  }
  return absl::OkStatus();
}

absl::Status CpuShardExecutor::Head(std::span<const BatchChunk> chunks,
                                    const std::vector<float>& hidden, std::vector<float>* logits) {
  RS_CHECK(plan().world.last_stage());
  const model::ModelConfig& c = config();
  const FlatBatch batch = Flatten(chunks, kv_.block_size);
  const int64_t H = c.hidden_size;
  const int64_t S = static_cast<int64_t>(batch.sample_rows.size());
  std::vector<float> last(S * H);
  for (int64_t s = 0; s < S; ++s) {
    RS_RETURN_IF_ERROR(cpu::RmsNorm(hidden.data() + batch.sample_rows[s] * H,
                                    shard_->final_norm.data(), 1, H,
                                    static_cast<float>(c.rms_norm_eps), last.data() + s * H));
  }
  const int64_t V = plan().vocab_size;
  if (tp_ == nullptr) {
    logits->resize(S * V);
    return cpu::DenseLinear(shard_->lm_head.data(), V, H, last.data(), S, logits->data(), pool_);
  }
  // Each TP rank scores its vocabulary rows; the gathered blocks are [tp, S, V] and become
  // [S, tp * V] rows of the whole vocabulary.
  std::vector<float> local(S * V);
  RS_RETURN_IF_ERROR(
      cpu::DenseLinear(shard_->lm_head.data(), V, H, last.data(), S, local.data(), pool_));
  const int tp = plan().world.tp;
  std::vector<float> gathered(tp * S * V);
  RS_RETURN_IF_ERROR(tp_->AllGather(local.data(), S * V, gathered.data()));
  logits->resize(S * c.vocab_size);
  for (int r = 0; r < tp; ++r) {
    for (int64_t s = 0; s < S; ++s) {
      std::memcpy(logits->data() + s * c.vocab_size + r * V, gathered.data() + (r * S + s) * V,
                  V * sizeof(float));
    }
  }
  return absl::OkStatus();
}

}  // namespace rackserve::engine
