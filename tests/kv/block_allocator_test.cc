#include "runtime/kv/block_allocator.h"

#include <algorithm>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::kv {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BlockAllocatorTest, FreshPoolHandsOutDistinctBlocksLowestFirst) {
  BlockAllocator allocator(8);
  EXPECT_EQ(allocator.num_blocks(), 8);
  EXPECT_EQ(allocator.num_free(), 8);
  absl::StatusOr<std::vector<int32_t>> a = allocator.Allocate(3);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(*a, ElementsAre(0, 1, 2));
  absl::StatusOr<std::vector<int32_t>> b = allocator.Allocate(5);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(*b, ElementsAre(3, 4, 5, 6, 7));
  EXPECT_EQ(allocator.num_free(), 0);
  EXPECT_EQ(allocator.num_used(), 8);
  for (int32_t block = 0; block < 8; ++block) EXPECT_EQ(allocator.ref_count(block), 1);
}

TEST(BlockAllocatorTest, AllocateZeroIsEmpty) {
  BlockAllocator allocator(2);
  absl::StatusOr<std::vector<int32_t>> none = allocator.Allocate(0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(allocator.num_free(), 2);
}

TEST(BlockAllocatorTest, NegativeCountIsInvalid) {
  BlockAllocator allocator(2);
  absl::StatusOr<std::vector<int32_t>> bad = allocator.Allocate(-1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("-1"));
}

TEST(BlockAllocatorTest, ExhaustionAllocatesNothing) {
  BlockAllocator allocator(5);
  ASSERT_TRUE(allocator.Allocate(3).ok());
  absl::StatusOr<std::vector<int32_t>> too_many = allocator.Allocate(3);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_many.status().message(), HasSubstr("requested 3"));
  EXPECT_THAT(too_many.status().message(), HasSubstr("free 2"));
  EXPECT_EQ(allocator.num_free(), 2);
  absl::StatusOr<std::vector<int32_t>> rest = allocator.Allocate(2);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_THAT(*rest, ElementsAre(3, 4));
}

TEST(BlockAllocatorTest, RefCountsKeepSharedBlocksUntilLastRelease) {
  BlockAllocator allocator(4);
  std::vector<int32_t> blocks = *allocator.Allocate(2);
  allocator.AddRef(blocks[0]);
  allocator.AddRef(blocks[0]);
  EXPECT_EQ(allocator.ref_count(blocks[0]), 3);
  EXPECT_EQ(allocator.ref_count(blocks[1]), 1);

  allocator.ReleaseAll(blocks);
  EXPECT_EQ(allocator.ref_count(blocks[0]), 2);
  EXPECT_EQ(allocator.ref_count(blocks[1]), 0);
  EXPECT_EQ(allocator.num_free(), 3);
  allocator.Release(blocks[0]);
  EXPECT_EQ(allocator.num_free(), 3);
  allocator.Release(blocks[0]);
  EXPECT_EQ(allocator.ref_count(blocks[0]), 0);
  EXPECT_EQ(allocator.num_free(), 4);
}

TEST(BlockAllocatorTest, FreedBlocksAreReusedAndNeverHandedOutTwice) {
  BlockAllocator allocator(16);
  std::vector<int32_t> held = *allocator.Allocate(10);
  allocator.Release(held[4]);
  allocator.Release(held[7]);
  std::vector<int32_t> again = *allocator.Allocate(8);
  EXPECT_EQ(allocator.num_free(), 0);
  std::set<int32_t> all(again.begin(), again.end());
  for (size_t i = 0; i < held.size(); ++i) {
    if (i != 4 && i != 7) all.insert(held[i]);
  }
  EXPECT_EQ(all.size(), 16u);
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 15);
}

TEST(BlockAllocatorTest, EmptyPool) {
  BlockAllocator allocator(0);
  EXPECT_EQ(allocator.num_free(), 0);
  EXPECT_EQ(allocator.Allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockAllocatorDeathTest, DoubleReleaseAborts) {
  BlockAllocator allocator(2);
  std::vector<int32_t> blocks = *allocator.Allocate(1);
  allocator.Release(blocks[0]);
  EXPECT_DEATH(allocator.Release(blocks[0]), "invariant broken");
}

TEST(BlockAllocatorDeathTest, ReleaseOfNeverAllocatedBlockAborts) {
  BlockAllocator allocator(2);
  EXPECT_DEATH(allocator.Release(1), "invariant broken");
}

TEST(BlockAllocatorDeathTest, AddRefOnFreeBlockAborts) {
  BlockAllocator allocator(2);
  EXPECT_DEATH(allocator.AddRef(0), "invariant broken");
}

TEST(BlockAllocatorDeathTest, OutOfRangeIdAborts) {
  BlockAllocator allocator(2);
  EXPECT_DEATH(allocator.Release(2), "invariant broken");
  EXPECT_DEATH(allocator.AddRef(-1), "invariant broken");
  EXPECT_DEATH(allocator.ref_count(7), "invariant broken");
}

}  // namespace
}  // namespace rackserve::kv
