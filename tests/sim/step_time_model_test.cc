#include "runtime/sim/step_time_model.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/model_generator.h"

namespace rackserve::sim {
namespace {

using ::testing::HasSubstr;

// A toy model with round numbers: q_size 8, kv_size 4, per layer 8 * (8 + 8) + 8 * 8 + 3 * 8 * 16
// = 576 linear params, 2 layers = 1,152; lm_head 100 * 8 = 800.
model::ModelConfig ToyConfig() {
  model::ModelConfig c;
  c.vocab_size = 100;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.max_position_embeddings = 64;
  c.eos_token_ids = {2};
  return c;
}

// Streamed weights: 1,152 * 0.5 + 800 * 2 (bf16 lm_head) = 2,176 bytes -> 2.176 s at 1,000 B/s.
// KV: 2 * 2 layers * 4 = 16 bytes per position. Attention: 4 * 8 * 2 = 64 FLOPs per pair.
GpuProfile ToyProfile() {
  GpuProfile p;
  p.name = "toy";
  p.hbm_bytes = 1'000'000;
  p.hbm_bytes_per_s = 1000;
  p.linear_flops_per_s = 1e4;
  p.attention_flops_per_s = 1e4;
  p.weight_bytes_per_param = 0.5;
  p.step_overhead_s = 0.25;
  return p;
}

StepTimeModel Model(const GpuProfile& profile = ToyProfile()) {
  absl::StatusOr<StepTimeModel> m = StepTimeModel::Create(ToyConfig(), profile);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

TEST(StepTimeModelTest, SizesOfToyModel) {
  const StepTimeModel m = Model();
  EXPECT_EQ(m.kv_bytes_per_token(), 16);
  EXPECT_EQ(m.weight_bytes(), 2176 + 1600);                    // + untied embedding, bf16
  EXPECT_EQ(m.kv_capacity_tokens(), (1'000'000 - 3776) / 16);  // 62,264
}

TEST(StepTimeModelTest, EmptyBatchCostsNothing) { EXPECT_EQ(Model().Estimate({}).total_s, 0); }

TEST(StepTimeModelTest, DecodeIsBandwidthBound) {
  // 1 token: 2 * 1152 + 2 * 800 = 3,904 FLOPs = 0.39 s < 2.176 s of weights.
  // KV: read 10 positions, write 1 = 11 * 16 = 176 bytes = 0.176 s; 10 pairs * 64 = 0.064 s.
  const std::vector<ChunkShape> chunks = {{9, 1, true}};
  const StepTime t = Model().Estimate(chunks);
  EXPECT_FALSE(t.linear_compute_bound);
  EXPECT_DOUBLE_EQ(t.linear_s, 2.176);
  EXPECT_DOUBLE_EQ(t.attention_s, 0.176);
  EXPECT_DOUBLE_EQ(t.overhead_s, 0.25);
  EXPECT_DOUBLE_EQ(t.total_s, 2.176 + 0.176 + 0.25);
}

TEST(StepTimeModelTest, PrefillIsComputeBound) {
  // 20 tokens: 2 * 1152 * 20 + 2 * 800 = 47,680 FLOPs = 4.768 s > 2.176 s.
  // KV: 40 positions * 16 = 640 bytes = 0.64 s; 20 * 21 / 2 = 210 pairs * 64 = 1.344 s.
  const std::vector<ChunkShape> chunks = {{0, 20, true}};
  const StepTime t = Model().Estimate(chunks);
  EXPECT_TRUE(t.linear_compute_bound);
  EXPECT_DOUBLE_EQ(t.linear_s, 4.768);
  EXPECT_DOUBLE_EQ(t.attention_s, 1.344);
  EXPECT_DOUBLE_EQ(t.total_s, 4.768 + 1.344 + 0.25);
}

TEST(StepTimeModelTest, MixedBatchAddsUpBeforeTheRoofline) {
  // 21 tokens, 2 sampling: 2 * 1152 * 21 + 2 * 800 * 2 = 51,584 FLOPs = 5.1584 s.
  // KV 51 positions = 0.816 s; 220 pairs * 64 = 1.408 s. A non-sampling chunk runs no lm_head.
  const std::vector<ChunkShape> chunks = {{9, 1, true}, {0, 20, true}, {5, 3, false}};
  const StepTime t = Model().Estimate(chunks);
  // The third chunk: 3 tokens (6,912 FLOPs), KV 5 + 6 = 11 positions, 3 * 5 + 6 = 21 pairs.
  EXPECT_DOUBLE_EQ(t.linear_s, (51584 + 6912) / 1e4);
  EXPECT_DOUBLE_EQ(t.attention_s, (220 + 21) * 64 / 1e4);
  EXPECT_DOUBLE_EQ(t.total_s, t.linear_s + t.attention_s + 0.25);
}

TEST(StepTimeModelTest, EfficienciesScaleTheirTerms) {
  GpuProfile p = ToyProfile();
  p.bandwidth_efficiency = 0.5;
  p.compute_efficiency = 0.25;
  const std::vector<ChunkShape> decode = {{9, 1, true}};
  EXPECT_DOUBLE_EQ(Model(p).Estimate(decode).linear_s, 2 * 2.176);
  const std::vector<ChunkShape> prefill = {{0, 20, true}};
  EXPECT_DOUBLE_EQ(Model(p).Estimate(prefill).linear_s, 4 * 4.768);
  EXPECT_DOUBLE_EQ(Model(p).Estimate(prefill).attention_s, 4 * 1.344);
}

TEST(StepTimeModelTest, Llama2_70bSizes) {
  absl::StatusOr<model::ModelConfig> config = model::PresetModelConfig("llama2-70b");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<GpuProfile> profile = GpuProfileByName("gb300");
  ASSERT_TRUE(profile.ok()) << profile.status();
  absl::StatusOr<StepTimeModel> m = StepTimeModel::Create(*config, *profile);
  ASSERT_TRUE(m.ok()) << m.status();
  // 80 layers * 855,638,016 linear params * 0.5625 bytes + lm_head and embedding 2 * 524,288,000.
  EXPECT_EQ(m->weight_bytes(), 68'451'041'280LL * 9 / 16 + 2 * 524'288'000LL);
  EXPECT_EQ(m->kv_bytes_per_token(), 2 * 80 * 8 * 128);  // FP8
  EXPECT_GT(m->kv_capacity_tokens(), 1'000'000);
}

TEST(StepTimeModelTest, RejectsBadProfileNamingField) {
  GpuProfile p = ToyProfile();
  p.compute_efficiency = 1.5;
  absl::StatusOr<StepTimeModel> m = StepTimeModel::Create(ToyConfig(), p);
  ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("compute_efficiency"));
  p = ToyProfile();
  p.hbm_bytes_per_s = 0;
  m = StepTimeModel::Create(ToyConfig(), p);
  ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("hbm_bytes_per_s"));
}

TEST(GpuProfileTest, NamedProfilesAreValid) {
  for (const std::string& name : GpuProfileNames()) {
    absl::StatusOr<GpuProfile> p = GpuProfileByName(name);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->name, name);
    EXPECT_TRUE(p->Validate().ok()) << p->Validate();
  }
  EXPECT_THAT(GpuProfileNames(), ::testing::UnorderedElementsAre("gb300", "gb200", "h200"));
}

TEST(GpuProfileTest, UnknownNameIsNotFound) {
  absl::StatusOr<GpuProfile> p = GpuProfileByName("b100x");
  ASSERT_EQ(p.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(p.status().message(), HasSubstr("b100x"));
  EXPECT_THAT(p.status().message(), HasSubstr("gb300"));
}

}  // namespace
}  // namespace rackserve::sim
