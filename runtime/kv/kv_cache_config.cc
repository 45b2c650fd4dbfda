#include "runtime/kv/kv_cache_config.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kv {

absl::StatusOr<KvCacheConfig> KvCacheConfig::Create(int block_size, int64_t num_blocks) {
  const bool power_of_two = block_size > 0 && (block_size & (block_size - 1)) == 0;
  if (!power_of_two || block_size > kMaxBlockSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache block_size must be a power of two in [1, ", kMaxBlockSize, "], got ",
                     block_size));
  }
  if (num_blocks < 1 || num_blocks > kMaxNumBlocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache num_blocks must be in [1, ", kMaxNumBlocks, "], got ", num_blocks));
  }
  KvCacheConfig config;
  config.block_size = block_size;
  config.num_blocks = num_blocks;
  return config;
}

int64_t KvCacheConfig::BlocksFor(int64_t num_tokens) const {
  RS_CHECK(num_tokens >= 0);
  return (num_tokens + block_size - 1) / block_size;
}

}  // namespace rackserve::kv
