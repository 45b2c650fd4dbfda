// PagedKvLayer: a view of one layer's paged KV cache in host memory (the CPU backend's
// layout; the cache owner, not this view, owns the memory).
//
// Layout: k and v are each float32 [num_blocks, block_size, num_kv_heads, head_dim],
// row-major. A token's cache slot is slot = block * block_size + offset (offset < block_size);
// element i of its key for kv head g is k[(slot * num_kv_heads + g) * head_dim + i], and of
// its value the same place in v. A sequence's block table lists its block ids in position order, so
// position p lives in block table[p / block_size] at offset p % block_size.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

namespace rackserve::kernels::cpu {

struct PagedKvLayer {
  float* k;  // [num_blocks, block_size, num_kv_heads, head_dim]
  float* v;  // same shape as k
  int64_t num_blocks;
  int block_size;  // tokens per block
  int64_t num_kv_heads;
  int64_t head_dim;

  // Slots in the layer: num_blocks * block_size.
  int64_t num_slots() const { return num_blocks * block_size; }
  // Floats per slot: num_kv_heads * head_dim.
  int64_t slot_stride() const { return num_kv_heads * head_dim; }
};

// OK when k and v are non-null and do not overlap and every size is positive; otherwise
// INVALID_ARGUMENT "<op>: argument cache.<field> ..." naming the field and its value.
absl::Status ValidatePagedKvLayer(const PagedKvLayer& cache, std::string_view op);

}  // namespace rackserve::kernels::cpu
