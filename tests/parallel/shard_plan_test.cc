// Tests SplitLayers and PlanShard: even and explicit layer splits, Megatron head / column /
// vocabulary ranges, kv-head replication when tp exceeds the kv heads, and the errors, each
// naming its culprit.
#include "runtime/parallel/shard_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "runtime/base/status_macros.h"
#include "runtime/model/model_generator.h"

namespace rackserve::parallel {
namespace {

using ::testing::HasSubstr;

model::ModelConfig Preset(const char* name) {
  auto config = model::PresetModelConfig(name);
  RS_CHECK(config.ok());
  return *config;
}

// `config` with `heads` query and `kv_heads` kv heads of width 32, and 512 FFN columns (whole
// NVFP4 blocks per rank up to tp 32).
model::ModelConfig WithHeads(model::ModelConfig config, int64_t heads, int64_t kv_heads) {
  config.intermediate_size = 512;
  config.num_attention_heads = heads;
  config.num_key_value_heads = kv_heads;
  config.head_dim = 32;
  config.hidden_size = heads * 32;
  return config;
}

WorldConfig World(int tp, int pp, int rank) {
  auto world = WorldConfig::Create(tp, pp, rank);
  RS_CHECK(world.ok());
  return *world;
}

ShardPlan Plan(const model::ModelConfig& config, int tp, int pp, int rank, int fp4_block = 16) {
  auto plan = PlanShard(config, World(tp, pp, rank), {}, fp4_block);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : ShardPlan{};
}

void ExpectInvalid(const absl::Status& status, const char* culprit) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(culprit));
}

TEST(SplitLayersTest, EvenSplitGivesTheRemainderToEarlierStages) {
  auto ranges = SplitLayers(80, 3);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  EXPECT_EQ(*ranges, (std::vector<LayerRange>{{0, 27}, {27, 54}, {54, 80}}));
  auto one = SplitLayers(5, 1);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, (std::vector<LayerRange>{{0, 5}}));
  auto each = SplitLayers(4, 4);
  ASSERT_TRUE(each.ok()) << each.status();
  EXPECT_EQ(*each, (std::vector<LayerRange>{{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
}

TEST(SplitLayersTest, ExplicitCounts) {
  const int64_t counts[] = {1, 3, 2};
  auto ranges = SplitLayers(6, 3, counts);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  EXPECT_EQ(*ranges, (std::vector<LayerRange>{{0, 1}, {1, 4}, {4, 6}}));
  EXPECT_EQ((*ranges)[1].size(), 3);
}

TEST(SplitLayersTest, Errors) {
  ExpectInvalid(SplitLayers(0, 1).status(), "num_layers 0");
  ExpectInvalid(SplitLayers(4, 0).status(), "pp 0");
  ExpectInvalid(SplitLayers(2, 3).status(), "pp 3 exceeds num_layers 2");
  const int64_t two[] = {1, 1};
  ExpectInvalid(SplitLayers(4, 3, two).status(), "stage_layers has 2 entries");
  const int64_t zero[] = {2, 0};
  ExpectInvalid(SplitLayers(2, 2, zero).status(), "stage_layers[1] 0");
  const int64_t negative[] = {-1, 3};
  ExpectInvalid(SplitLayers(2, 2, negative).status(), "stage_layers[0] -1");
  const int64_t short_sum[] = {1, 2};
  ExpectInvalid(SplitLayers(4, 2, short_sum).status(), "stage_layers sum to 3");
}

TEST(PlanShardTest, Llama2_70bTp8Pp4) {
  const model::ModelConfig config = Preset("llama2-70b");
  const ShardPlan plan = Plan(config, 8, 4, 13);  // stage 1, TP rank 5
  EXPECT_EQ(plan.world, World(8, 4, 13));
  EXPECT_EQ(plan.layers, (LayerRange{20, 40}));
  EXPECT_EQ(plan.q_head_begin, 40);
  EXPECT_EQ(plan.num_q_heads, 8);
  EXPECT_EQ(plan.kv_head_begin, 5);
  EXPECT_EQ(plan.num_kv_heads, 1);
  EXPECT_EQ(plan.ffn_begin, 5 * 3584);
  EXPECT_EQ(plan.ffn_size, 3584);
  EXPECT_EQ(plan.vocab_begin, 5 * 4000);
  EXPECT_EQ(plan.vocab_size, 4000);
}

TEST(PlanShardTest, TrivialPlanHoldsEverything) {
  const model::ModelConfig config = Preset("tiny");
  const ShardPlan plan = Plan(config, 1, 1, 0);
  EXPECT_EQ(plan.layers, (LayerRange{0, config.num_hidden_layers}));
  EXPECT_EQ(plan.q_head_begin, 0);
  EXPECT_EQ(plan.num_q_heads, config.num_attention_heads);
  EXPECT_EQ(plan.kv_head_begin, 0);
  EXPECT_EQ(plan.num_kv_heads, config.num_key_value_heads);
  EXPECT_EQ(plan.ffn_begin, 0);
  EXPECT_EQ(plan.ffn_size, config.intermediate_size);
  EXPECT_EQ(plan.vocab_begin, 0);
  EXPECT_EQ(plan.vocab_size, config.vocab_size);
}

TEST(PlanShardTest, ExplicitStageLayers) {
  model::ModelConfig config = Preset("llama2-7b");
  const int64_t counts[] = {20, 12};
  auto plan = PlanShard(config, World(2, 2, 3), counts, 16);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->layers, (LayerRange{20, 32}));
}

TEST(PlanShardTest, KvHeadsAreReplicatedOnTheRanksThatUseThem) {
  // 4 query heads, 2 kv heads, tp 4: ranks 0 and 1 hold kv head 0, ranks 2 and 3 kv head 1.
  const model::ModelConfig four_two = WithHeads(Preset("tiny"), 4, 2);
  for (int rank = 0; rank < 4; ++rank) {
    const ShardPlan plan = Plan(four_two, 4, 1, rank);
    EXPECT_EQ(plan.num_q_heads, 1);
    EXPECT_EQ(plan.q_head_begin, rank);
    EXPECT_EQ(plan.num_kv_heads, 1);
    EXPECT_EQ(plan.kv_head_begin, rank / 2) << "rank " << rank;
  }
  // tp 2 with one kv head: both ranks hold it.
  const model::ModelConfig four_one = WithHeads(Preset("tiny"), 4, 1);
  for (int rank = 0; rank < 2; ++rank) {
    const ShardPlan plan = Plan(four_one, 2, 1, rank);
    EXPECT_EQ(plan.kv_head_begin, 0);
    EXPECT_EQ(plan.num_kv_heads, 1);
  }
  // tp 2 with 2 kv heads: split, one each.
  for (int rank = 0; rank < 2; ++rank) {
    const ShardPlan plan = Plan(four_two, 2, 1, rank);
    EXPECT_EQ(plan.kv_head_begin, rank);
    EXPECT_EQ(plan.num_kv_heads, 1);
  }
}

TEST(PlanShardTest, EveryLocalQueryHeadFindsItsKvHeadLocally) {
  const model::ModelConfig base = Preset("tiny");
  for (const auto& [heads, kv_heads, tp] :
       {std::tuple{8, 8, 4}, {8, 2, 4}, {8, 2, 8}, {8, 1, 8}, {16, 4, 2}, {16, 4, 16}}) {
    const model::ModelConfig config = WithHeads(base, heads, kv_heads);
    const int64_t group = heads / kv_heads;
    std::vector<int> holders(static_cast<size_t>(kv_heads), 0);
    for (int rank = 0; rank < tp; ++rank) {
      const ShardPlan plan = Plan(config, tp, 1, rank);
      for (int64_t h = plan.q_head_begin; h < plan.q_head_begin + plan.num_q_heads; ++h) {
        EXPECT_GE(h / group, plan.kv_head_begin) << heads << "/" << kv_heads << " tp " << tp;
        EXPECT_LT(h / group, plan.kv_head_begin + plan.num_kv_heads);
      }
      for (int64_t k = 0; k < plan.num_kv_heads; ++k) ++holders[plan.kv_head_begin + k];
    }
    const int replicas = tp > kv_heads ? tp / kv_heads : 1;
    for (const int count : holders) EXPECT_EQ(count, replicas);
  }
}

TEST(PlanShardTest, UnshardableConfigsNameTheField) {
  const model::ModelConfig tiny = Preset("tiny");  // 4 heads, 2 kv heads, ffn 352, vocab 512
  ExpectInvalid(PlanShard(tiny, World(8, 1, 0), {}, 16).status(), "num_attention_heads 4");
  ExpectInvalid(PlanShard(WithHeads(tiny, 12, 3), World(2, 1, 0), {}, 16).status(),
                "num_key_value_heads 3");
  model::ModelConfig ffn = tiny;
  ffn.intermediate_size = 354;
  ExpectInvalid(PlanShard(ffn, World(4, 1, 0), {}, 16).status(), "intermediate_size 354");
  model::ModelConfig vocab = tiny;
  vocab.vocab_size = 510;
  ExpectInvalid(PlanShard(vocab, World(4, 1, 0), {}, 16).status(), "vocab_size 510");
  // tp 4: one query head of 32 columns per rank, 88 FFN columns per rank.
  ExpectInvalid(PlanShard(tiny, World(4, 1, 0), {}, 64).status(), "o_proj local input width 32");
  ExpectInvalid(PlanShard(tiny, World(4, 1, 0), {}, 16).status(), "down_proj local input width 88");
  ExpectInvalid(PlanShard(tiny, World(2, 1, 0), {}, 32).status(),
                "down_proj local input width 176");
  ExpectInvalid(PlanShard(tiny, World(1, 3, 0), {}, 16).status(), "pp 3 exceeds num_layers 2");
  ExpectInvalid(PlanShard(tiny, World(1, 1, 0), {}, 0).status(), "fp4_block 0");
  WorldConfig bad_world;
  bad_world.rank = 1;
  ExpectInvalid(PlanShard(tiny, bad_world, {}, 16).status(), "rank 1");
  model::ModelConfig no_heads = tiny;
  no_heads.num_attention_heads = 0;
  ExpectInvalid(PlanShard(no_heads, World(1, 1, 0), {}, 16).status(), "num_attention_heads");
}

TEST(PlanShardTest, TinyShardsWithTp2ForNvfp4) {
  const ShardPlan plan = Plan(Preset("tiny"), 2, 2, 3);
  EXPECT_EQ(plan.layers, (LayerRange{1, 2}));
  EXPECT_EQ(plan.ffn_begin, 176);
  EXPECT_EQ(plan.ffn_size, 176);
  EXPECT_EQ(plan.vocab_begin, 256);
}

}  // namespace
}  // namespace rackserve::parallel
