#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/internal/argument_checks.h"
#include "kernels/cpu/internal/lanes.h"
#include "kernels/cpu/internal/multiversion.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {
namespace {

using internal::kLanes;
using internal::Lanes;

constexpr std::string_view kOp = "PagedAttention";
// Key positions scored per step of the running softmax.
constexpr int64_t kTile = 64;

absl::Status ValidateChunks(const PagedAttentionParams& p) {
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "query_begin", p.query_begin));
  if (p.query_begin[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedAttention: query_begin[0] must be 0, got ", p.query_begin[0]));
  }
  if (p.num_chunks == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "context_len", p.context_len));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "block_tables", p.block_tables));
  const int64_t block_size = p.cache.block_size;
  for (int64_t c = 0; c < p.num_chunks; ++c) {
    const int64_t queries = p.query_begin[c + 1] - p.query_begin[c];
    if (queries < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PagedAttention: query_begin decreases at chunk ", c, ": query_begin[", c,
          "] = ", p.query_begin[c], " > query_begin[", c + 1, "] = ", p.query_begin[c + 1]));
    }
    if (queries == 0) continue;
    if (p.context_len[c] < queries) {
      return absl::InvalidArgumentError(absl::StrCat("PagedAttention: chunk ", c,
                                                     " has context_len ", p.context_len[c],
                                                     ", fewer than its ", queries, " queries"));
    }
    const int32_t* table = p.block_tables[c];
    if (table == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("PagedAttention: block_tables[", c, "] is null"));
    }
    const int64_t blocks = (p.context_len[c] + block_size - 1) / block_size;
    for (int64_t b = 0; b < blocks; ++b) {
      if (table[b] < 0 || table[b] >= p.cache.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat(
            "PagedAttention: chunk ", c, " block_tables[", c, "][", b, "] = ", table[b],
            " is outside the cache's blocks [0, ", p.cache.num_blocks, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Validate(const PagedAttentionParams& p) {
  RS_RETURN_IF_ERROR(ValidatePagedKvLayer(p.cache, kOp));
  RS_RETURN_IF_ERROR(internal::CheckPositive(kOp, "num_heads", p.num_heads));
  if (p.num_heads % p.cache.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: num_heads ", p.num_heads,
                                                   " is not a multiple of cache.num_kv_heads ",
                                                   p.cache.num_kv_heads));
  }
  if (!std::isfinite(p.scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedAttention: scale must be finite, got ", p.scale));
  }
  RS_RETURN_IF_ERROR(internal::CheckNonNegative(kOp, "num_chunks", p.num_chunks));
  RS_RETURN_IF_ERROR(ValidateChunks(p));
  const int64_t total_tokens = p.query_begin[p.num_chunks];
  if (total_tokens == 0) return absl::OkStatus();
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "q", p.q));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(kOp, "out", p.out));
  const int64_t floats = total_tokens * p.num_heads * p.cache.head_dim;
  return internal::CheckDisjoint(kOp, "out", p.out, floats, "q", p.q, floats);
}

[[gnu::always_inline]] inline float Dot(const float* a, const float* b, int64_t n) {
  const int64_t n_vec = n - n % kLanes;
  Lanes acc = {};
  for (int64_t i = 0; i < n_vec; i += kLanes) {
    Lanes va, vb;
    internal::LoadLanes(a + i, &va);
    internal::LoadLanes(b + i, &vb);
    acc += va * vb;
  }
  float sum = internal::SumLanes(acc);
  for (int64_t i = n_vec; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// acc[0 : n] += weight * row[0 : n].
[[gnu::always_inline]] inline void Axpy(float weight, const float* row, int64_t n, float* acc) {
  for (int64_t i = 0; i < n; ++i) acc[i] += weight * row[i];
}

// Attention of the query heads of kv head `kv_head` in query row `row`, whose position is
// `position` in the sequence with block table `table`. scratch holds
// group * (kTile + head_dim + 2) floats.
RS_CPU_MULTIVERSION void AttendGroup(const PagedAttentionParams& p, int64_t row, int64_t position,
                                     const int32_t* table, int64_t kv_head, float* scratch) {
  const int64_t group = p.num_heads / p.cache.num_kv_heads;
  const int64_t head_dim = p.cache.head_dim;
  const int64_t block_size = p.cache.block_size;
  float* scores = scratch;                  // [group, kTile]
  float* acc = scores + group * kTile;      // [group, head_dim]
  float* run_max = acc + group * head_dim;  // [group]
  float* run_sum = run_max + group;         // [group]
  std::fill(acc, acc + group * head_dim, 0.0f);
  std::fill(run_max, run_max + group, -std::numeric_limits<float>::infinity());
  std::fill(run_sum, run_sum + group, 0.0f);

  const int64_t head0 = row * p.num_heads + kv_head * group;
  const float* q = p.q + head0 * head_dim;  // [group, head_dim]
  const float* k_row[kTile];
  const float* v_row[kTile];
  const int64_t length = position + 1;
  for (int64_t p0 = 0; p0 < length; p0 += kTile) {
    const int64_t n = std::min(kTile, length - p0);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t pos = p0 + j;
      const int64_t slot =
          static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
      const int64_t offset = (slot * p.cache.num_kv_heads + kv_head) * head_dim;
      k_row[j] = p.cache.k + offset;
      v_row[j] = p.cache.v + offset;
    }
    for (int64_t h = 0; h < group; ++h) {
      float* s = scores + h * kTile;
      float tile_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        s[j] = Dot(q + h * head_dim, k_row[j], head_dim) * p.scale;
        tile_max = std::max(tile_max, s[j]);
      }
      const float new_max = std::max(run_max[h], tile_max);
      float tile_sum = 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        s[j] = std::exp(s[j] - new_max);
        tile_sum += s[j];
      }
      if (p0 > 0) {
        const float correction = std::exp(run_max[h] - new_max);
        run_sum[h] *= correction;
        float* a = acc + h * head_dim;
        for (int64_t d = 0; d < head_dim; ++d) a[d] *= correction;
      }
      run_sum[h] += tile_sum;
      run_max[h] = new_max;
    }
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t h = 0; h < group; ++h) {
        Axpy(scores[h * kTile + j], v_row[j], head_dim, acc + h * head_dim);
      }
    }
  }
  float* out = p.out + head0 * head_dim;
  for (int64_t h = 0; h < group; ++h) {
    const float inv_sum = 1.0f / run_sum[h];
    for (int64_t d = 0; d < head_dim; ++d) out[h * head_dim + d] = acc[h * head_dim + d] * inv_sum;
  }
}

}  // namespace

absl::Status PagedAttention(const PagedAttentionParams& params, base::ThreadPool* pool) {
  RS_RETURN_IF_ERROR(Validate(params));
  const int64_t total_tokens = params.query_begin[params.num_chunks];
  if (total_tokens == 0) return absl::OkStatus();

  std::vector<int64_t> row_chunk(total_tokens);
  for (int64_t c = 0; c < params.num_chunks; ++c) {
    std::fill(row_chunk.begin() + params.query_begin[c],
              row_chunk.begin() + params.query_begin[c + 1], c);
  }
  const int64_t kv_heads = params.cache.num_kv_heads;
  const int64_t group = params.num_heads / kv_heads;
  const int64_t scratch_floats = group * (kTile + params.cache.head_dim + 2);
  auto run = [&](int64_t item_begin, int64_t item_end) {
    std::vector<float> scratch(scratch_floats);
    for (int64_t item = item_begin; item < item_end; ++item) {
      const int64_t row = item / kv_heads;
      const int64_t c = row_chunk[row];
      const int64_t queries = params.query_begin[c + 1] - params.query_begin[c];
      const int64_t position = params.context_len[c] - queries + (row - params.query_begin[c]);
      AttendGroup(params, row, position, params.block_tables[c], item % kv_heads, scratch.data());
    }
  };
  const int64_t items = total_tokens * kv_heads;
  if (pool == nullptr) {
    run(0, items);
  } else {
    pool->ParallelFor(items, 1, run);
  }
  return absl::OkStatus();
}

}  // namespace rackserve::kernels::cpu
