#include "runtime/kv/block_allocator.h"

#include <algorithm>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kv {

BlockAllocator::BlockAllocator(int64_t num_blocks) {
  RS_CHECK(num_blocks >= 0 && num_blocks <= INT32_MAX);
  ref_counts_.assign(static_cast<size_t>(num_blocks), 0);
  free_.reserve(static_cast<size_t>(num_blocks));
  // Highest id at the bottom of the stack, so a fresh pool hands out 0, 1, 2, ...
  for (int64_t id = num_blocks - 1; id >= 0; --id) free_.push_back(static_cast<int32_t>(id));
}

absl::StatusOr<std::vector<int32_t>> BlockAllocator::Allocate(int64_t n) {
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot allocate a negative number of KV blocks: n = ", n));
  }
  if (n > num_free()) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache out of blocks: requested ", n,
                                                     ", free ", num_free(), " of ", num_blocks()));
  }
  std::vector<int32_t> blocks(free_.end() - n, free_.end());
  std::reverse(blocks.begin(), blocks.end());
  free_.resize(free_.size() - static_cast<size_t>(n));
  for (int32_t block : blocks) ref_counts_[block] = 1;
  return blocks;
}

void BlockAllocator::AddRef(int32_t block) {
  CheckId(block);
  RS_CHECK(ref_counts_[block] > 0);  // AddRef on a free block
  RS_CHECK(ref_counts_[block] < INT32_MAX);
  ++ref_counts_[block];
}

void BlockAllocator::Release(int32_t block) {
  CheckId(block);
  RS_CHECK(ref_counts_[block] > 0);  // release of a free block (double free)
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

void BlockAllocator::ReleaseAll(std::span<const int32_t> blocks) {
  for (int32_t block : blocks) Release(block);
}

int32_t BlockAllocator::ref_count(int32_t block) const {
  CheckId(block);
  return ref_counts_[block];
}

void BlockAllocator::CheckId(int32_t block) const { RS_CHECK(block >= 0 && block < num_blocks()); }

}  // namespace rackserve::kv
