#include "kernels/cpu/write_kv.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernels/cpu/reference_check.h"

namespace rackserve::kernels::cpu {
namespace {

using reference_check::Poisoned;
using reference_check::RandomFloats;
using reference_check::SeededRng;
using ::testing::HasSubstr;

constexpr int64_t kBlocks = 3;
constexpr int kBlockSize = 4;
constexpr int64_t kKvHeads = 2;
constexpr int64_t kHeadDim = 8;
constexpr int64_t kSlotFloats = kKvHeads * kHeadDim;
constexpr int64_t kCacheFloats = kBlocks * kBlockSize * kSlotFloats;

TEST(WriteKvTest, StoresEachTokenInItsSlotAndNothingElse) {
  auto rng = SeededRng();
  std::vector<float> k = Poisoned(kCacheFloats);
  std::vector<float> v = Poisoned(kCacheFloats);
  const PagedKvLayer cache{k.data(), v.data(), kBlocks, kBlockSize, kKvHeads, kHeadDim};
  const std::vector<int64_t> slots = {5, 0, 11, 4};  // block 1 offset 1, block 0, block 2, ...
  const std::vector<float> k_new = RandomFloats(rng, 4 * kSlotFloats);
  const std::vector<float> v_new = RandomFloats(rng, 4 * kSlotFloats);
  ASSERT_TRUE(WriteKv(cache, k_new.data(), v_new.data(), slots.data(), 4).ok());

  std::vector<int> written(kBlocks * kBlockSize, -1);
  for (int t = 0; t < 4; ++t) written[slots[t]] = t;
  for (int64_t slot = 0; slot < kBlocks * kBlockSize; ++slot) {
    for (int64_t e = 0; e < kSlotFloats; ++e) {
      const int t = written[slot];
      if (t < 0) {
        ASSERT_TRUE(std::isnan(k[slot * kSlotFloats + e])) << "slot " << slot << " was written";
        ASSERT_TRUE(std::isnan(v[slot * kSlotFloats + e])) << "slot " << slot << " was written";
      } else {
        ASSERT_EQ(k[slot * kSlotFloats + e], k_new[t * kSlotFloats + e]) << "slot " << slot;
        ASSERT_EQ(v[slot * kSlotFloats + e], v_new[t * kSlotFloats + e]) << "slot " << slot;
      }
    }
  }
}

TEST(WriteKvTest, RejectsSlotsOutsideTheCacheBeforeWriting) {
  std::vector<float> k = Poisoned(kCacheFloats);
  std::vector<float> v = Poisoned(kCacheFloats);
  const PagedKvLayer cache{k.data(), v.data(), kBlocks, kBlockSize, kKvHeads, kHeadDim};
  const std::vector<float> rows(3 * kSlotFloats, 1.0f);
  for (int64_t bad : {int64_t{12}, int64_t{-1}}) {
    const std::vector<int64_t> slots = {0, 1, bad};
    const absl::Status s = WriteKv(cache, rows.data(), rows.data(), slots.data(), 3);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("token 2 has slot ", bad)));
    EXPECT_THAT(s.message(), HasSubstr("[0, 12)"));
    EXPECT_TRUE(std::isnan(k[0])) << "a rejected call wrote to the cache";
  }
}

TEST(WriteKvTest, RejectsBadArguments) {
  std::vector<float> k(kCacheFloats), v(kCacheFloats);
  const PagedKvLayer good{k.data(), v.data(), kBlocks, kBlockSize, kKvHeads, kHeadDim};
  const std::vector<float> rows(kSlotFloats, 1.0f);
  const int64_t slot = 0;
  auto with = [&](auto edit) {
    PagedKvLayer c = good;
    edit(c);
    return WriteKv(c, rows.data(), rows.data(), &slot, 1);
  };
  struct Case {
    absl::Status status;
    const char* culprit;
  };
  const Case cases[] = {
      {with([](PagedKvLayer& c) { c.k = nullptr; }), "argument cache.k is null"},
      {with([](PagedKvLayer& c) { c.v = nullptr; }), "argument cache.v is null"},
      {with([](PagedKvLayer& c) { c.num_blocks = 0; }), "cache.num_blocks must be > 0, got 0"},
      {with([](PagedKvLayer& c) { c.block_size = -4; }), "cache.block_size must be > 0, got -4"},
      {with([](PagedKvLayer& c) { c.num_kv_heads = 0; }), "cache.num_kv_heads must be > 0"},
      {with([](PagedKvLayer& c) { c.head_dim = 0; }), "cache.head_dim must be > 0"},
      {with([&](PagedKvLayer& c) { c.v = c.k + 8; }), "cache.k overlaps argument cache.v"},
      {WriteKv(good, rows.data(), rows.data(), &slot, -1), "argument tokens must be >= 0"},
      {WriteKv(good, nullptr, rows.data(), &slot, 1), "argument k_new is null"},
      {WriteKv(good, rows.data(), nullptr, &slot, 1), "argument v_new is null"},
      {WriteKv(good, rows.data(), rows.data(), nullptr, 1), "argument slots is null"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.culprit;
    EXPECT_THAT(c.status.message(), HasSubstr(c.culprit));
    EXPECT_THAT(c.status.message(), HasSubstr("WriteKv: "));
  }
}

}  // namespace
}  // namespace rackserve::kernels::cpu
