#include "runtime/kv/kv_cache_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::kv {
namespace {

using ::testing::HasSubstr;

TEST(KvCacheConfigTest, CreateAcceptsPowersOfTwo) {
  for (int block_size : {1, 2, 16, 256, 1024}) {
    absl::StatusOr<KvCacheConfig> config = KvCacheConfig::Create(block_size, 10);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->block_size, block_size);
    EXPECT_EQ(config->num_blocks, 10);
    EXPECT_EQ(config->capacity_tokens(), 10 * block_size);
  }
}

TEST(KvCacheConfigTest, CreateRejectsBadBlockSize) {
  for (int block_size : {0, -16, 3, 24, 2048}) {
    absl::StatusOr<KvCacheConfig> config = KvCacheConfig::Create(block_size, 10);
    ASSERT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << block_size;
    EXPECT_THAT(config.status().message(), HasSubstr("block_size"));
    EXPECT_THAT(config.status().message(), HasSubstr(std::to_string(block_size)));
  }
}

TEST(KvCacheConfigTest, CreateRejectsBadNumBlocks) {
  for (int64_t num_blocks : {int64_t{0}, int64_t{-1}, int64_t{1} << 31}) {
    absl::StatusOr<KvCacheConfig> config = KvCacheConfig::Create(16, num_blocks);
    ASSERT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << num_blocks;
    EXPECT_THAT(config.status().message(), HasSubstr("num_blocks"));
    EXPECT_THAT(config.status().message(), HasSubstr(std::to_string(num_blocks)));
  }
}

TEST(KvCacheConfigTest, BlocksForRoundsUp) {
  const KvCacheConfig config = *KvCacheConfig::Create(16, 100);
  EXPECT_EQ(config.BlocksFor(0), 0);
  EXPECT_EQ(config.BlocksFor(1), 1);
  EXPECT_EQ(config.BlocksFor(16), 1);
  EXPECT_EQ(config.BlocksFor(17), 2);
  EXPECT_EQ(config.BlocksFor(32), 2);
  EXPECT_EQ(config.BlocksFor(1000), 63);
  const KvCacheConfig unit = *KvCacheConfig::Create(1, 100);
  EXPECT_EQ(unit.BlocksFor(7), 7);
}

}  // namespace
}  // namespace rackserve::kv
