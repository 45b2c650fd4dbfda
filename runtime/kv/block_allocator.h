// BlockAllocator: a fixed pool of KV cache blocks, ids [0, num_blocks), with a free list and a
// reference count per block.
//
// A block is free (count 0) or held (count >= 1). Allocate() hands out free blocks with count 1;
// a shared prefix holds one block in several block tables by AddRef(); Release() drops one
// reference and returns the block to the free list when the count reaches 0. Allocation order is
// deterministic: the lowest ids first on a fresh pool, then the most recently freed blocks.
//
// Errors: running out of blocks is a Status (RESOURCE_EXHAUSTED: the caller frees or preempts and
// retries). An id outside the pool, AddRef or Release on a free block (a double free) are
// programming errors and abort (RS_CHECK).
//
// Not thread-safe: owned by one scheduler. Not copyable (block tables refer to one pool).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::kv {

class BlockAllocator {
 public:
  // num_blocks in [0, INT32_MAX] (KvCacheConfig::num_blocks); all blocks start free.
  explicit BlockAllocator(int64_t num_blocks);
  BlockAllocator(const BlockAllocator&) = delete;
  BlockAllocator& operator=(const BlockAllocator&) = delete;

  // n >= 0 blocks, each with ref count 1. RESOURCE_EXHAUSTED, allocating nothing, when fewer than
  // n are free; INVALID_ARGUMENT for n < 0.
  absl::StatusOr<std::vector<int32_t>> Allocate(int64_t n);

  // Adds a reference to a held block.
  void AddRef(int32_t block);
  // Drops one reference to a held block; it returns to the free list at 0.
  void Release(int32_t block);
  // Release() of each element, in order (a block listed twice is released twice).
  void ReleaseAll(std::span<const int32_t> blocks);

  // 0 for a free block.
  int32_t ref_count(int32_t block) const;
  int64_t num_blocks() const { return static_cast<int64_t>(ref_counts_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_used() const { return num_blocks() - num_free(); }

 private:
  void CheckId(int32_t block) const;

  std::vector<int32_t> ref_counts_;  // [num_blocks]
  std::vector<int32_t> free_;        // stack of free ids; the back is handed out next
};

}  // namespace rackserve::kv
