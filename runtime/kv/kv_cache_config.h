// KvCacheConfig: the shape of a paged KV cache, as a validated value type.
//
// The cache is `num_blocks` fixed-size blocks of `block_size` token positions each; a sequence's
// positions [i * block_size, (i + 1) * block_size) live in the i-th block of its block table.
// Build one with Create(), which rejects bad values; a default-constructed config is not valid
// (num_blocks == 0). A plain value: copyable, immutable by convention, safe to share across
// threads.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace rackserve::kv {

struct KvCacheConfig {
  static constexpr int kMaxBlockSize = 1024;
  // Block ids are int32_t in block tables.
  static constexpr int64_t kMaxNumBlocks = INT32_MAX;

  int block_size = 16;     // tokens per block, a power of two in [1, kMaxBlockSize]
  int64_t num_blocks = 0;  // blocks in the pool, in [1, kMaxNumBlocks]

  // INVALID_ARGUMENT naming the field (`block_size`, `num_blocks`) and its value.
  static absl::StatusOr<KvCacheConfig> Create(int block_size, int64_t num_blocks);

  // Blocks needed to hold num_tokens positions: ceil(num_tokens / block_size). num_tokens >= 0.
  int64_t BlocksFor(int64_t num_tokens) const;

  // Token positions the whole cache holds: num_blocks * block_size.
  int64_t capacity_tokens() const { return num_blocks * block_size; }
};

}  // namespace rackserve::kv
