// PagedAttention: causal multi-head attention (GQA) of a batch of sequence chunks over a paged
// KV cache (kernels/cpu/paged_kv_layer.h) — prefill chunks, chunked-prefill continuations and
// single-token decodes mixed in one call.
//
// Chunk c owns the query rows [query_begin[c], query_begin[c + 1]) of
// q [total_tokens, num_heads, head_dim], total_tokens = query_begin[num_chunks]. Its n_c
// queries sit at positions context_len[c] - n_c ... context_len[c] - 1 of their sequence, and
// the query at position p attends to positions [0, p] of the sequence, whose keys and values
// (this chunk's included: WriteKv them first) live in the blocks listed by block_tables[c]
// (position p in block block_tables[c][p / block_size], offset p % block_size). Query head h
// reads kv head h / (num_heads / num_kv_heads).
//   out[t, h, :] = sum_p softmax_p(scale * q[t, h, :] . k[p, :]) * v[p, :]
// computed with a running max and float accumulation (stable for any score magnitude).
// out [total_tokens, num_heads, head_dim] float32; every row of it is written.
//
// Work is split over (query row, kv head): each item computes the num_heads / num_kv_heads
// query heads sharing that kv head, so each key and value row is read once per group. Results
// do not depend on the pool. Thread-safety: reentrant; the cache is only read.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/paged_kv_layer.h"
#include "runtime/base/thread_pool.h"

namespace rackserve::kernels::cpu {

struct PagedAttentionParams {
  const float* q;     // [total_tokens, num_heads, head_dim]
  float* out;         // [total_tokens, num_heads, head_dim]; must not overlap q
  int64_t num_heads;  // query heads, a multiple of cache.num_kv_heads
  float scale;        // score scale, normally 1 / sqrt(head_dim)
  PagedKvLayer cache;
  int64_t num_chunks;
  const int64_t* query_begin;          // [num_chunks + 1], query_begin[0] == 0, non-decreasing
  const int64_t* context_len;          // [num_chunks], context_len[c] >= its number of queries
  const int32_t* const* block_tables;  // [num_chunks] -> block ids covering context_len[c]
};

// pool may be null (runs on the caller). INVALID_ARGUMENT, naming the field (and the chunk and
// table index where one is at fault), when: the cache view is invalid; num_heads is not a
// positive multiple of cache.num_kv_heads; scale is not finite; num_chunks < 0; a needed pointer
// is null; query_begin[0] != 0 or query_begin decreases; out overlaps q; context_len[c] is
// smaller than chunk c's query count; a block id a chunk needs lies outside [0, num_blocks).
absl::Status PagedAttention(const PagedAttentionParams& params, base::ThreadPool* pool);

}  // namespace rackserve::kernels::cpu
