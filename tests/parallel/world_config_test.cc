// Tests WorldConfig: validation errors name the field, and the stage-major rank arithmetic.
#include "runtime/parallel/world_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rackserve::parallel {
namespace {

using ::testing::HasSubstr;

void ExpectInvalid(const absl::StatusOr<WorldConfig>& world, const char* culprit) {
  ASSERT_FALSE(world.ok()) << culprit;
  EXPECT_EQ(world.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(world.status().message(), HasSubstr(culprit));
}

TEST(WorldConfigTest, RankArithmeticIsStageMajor) {
  auto world = WorldConfig::Create(2, 3, 5);
  ASSERT_TRUE(world.ok()) << world.status();
  EXPECT_EQ(world->size(), 6);
  EXPECT_EQ(world->stage(), 2);
  EXPECT_EQ(world->tp_rank(), 1);
  EXPECT_FALSE(world->first_stage());
  EXPECT_TRUE(world->last_stage());
  EXPECT_EQ(world->RankOf(2, 1), 5);
  EXPECT_EQ(world->RankOf(0, 1), 1);
  EXPECT_EQ(world->Layout(), "tp2-pp3");
}

TEST(WorldConfigTest, EveryRankMapsBackToItself) {
  for (const auto& [tp, pp] : {std::pair{1, 1}, {4, 1}, {1, 4}, {2, 2}, {8, 3}}) {
    for (int rank = 0; rank < tp * pp; ++rank) {
      auto world = WorldConfig::Create(tp, pp, rank);
      ASSERT_TRUE(world.ok()) << world.status();
      EXPECT_EQ(world->RankOf(world->stage(), world->tp_rank()), rank);
      EXPECT_EQ(world->first_stage(), rank < tp);
      EXPECT_EQ(world->last_stage(), rank >= (pp - 1) * tp);
    }
  }
}

TEST(WorldConfigTest, TrivialWorldIsOneRank) {
  auto world = WorldConfig::Create(1, 1, 0);
  ASSERT_TRUE(world.ok()) << world.status();
  EXPECT_EQ(*world, WorldConfig{});
  EXPECT_TRUE(world->first_stage() && world->last_stage());
  EXPECT_EQ(world->Layout(), "tp1-pp1");
}

TEST(WorldConfigTest, RejectsBadFields) {
  ExpectInvalid(WorldConfig::Create(0, 1, 0), "tp 0");
  ExpectInvalid(WorldConfig::Create(-2, 1, 0), "tp -2");
  ExpectInvalid(WorldConfig::Create(1, 0, 0), "pp 0");
  ExpectInvalid(WorldConfig::Create(2, 2, -1), "rank -1");
  ExpectInvalid(WorldConfig::Create(2, 2, 4), "rank 4");
  ExpectInvalid(WorldConfig::Create(1 << 16, 1 << 16, 0), "does not fit");
}

}  // namespace
}  // namespace rackserve::parallel
