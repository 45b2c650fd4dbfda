#include "runtime/sim/sim_model_runner.h"

#include <chrono>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::sim {
namespace {

using ::testing::HasSubstr;

model::ModelConfig ToyConfig() {
  model::ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.max_position_embeddings = 256;
  c.eos_token_ids = {2, 3};
  return c;
}

// Every step costs overhead_s plus a negligible roofline term (fast device, tiny model).
GpuProfile FixedStepProfile(double overhead_s) {
  GpuProfile p;
  p.name = "fixed";
  p.hbm_bytes = int64_t{1} << 30;
  p.hbm_bytes_per_s = 1e15;
  p.linear_flops_per_s = 1e18;
  p.attention_flops_per_s = 1e18;
  p.weight_bytes_per_param = 0.5625;
  p.step_overhead_s = overhead_s;
  return p;
}

struct Fixture {
  std::unique_ptr<SimModelRunner> runner;
  std::vector<int32_t> blocks;
};

Fixture Make(ClockMode clock, double overhead_s = 1e-3) {
  absl::StatusOr<kv::KvCacheConfig> kv = kv::KvCacheConfig::Create(16, 64);
  EXPECT_TRUE(kv.ok());
  absl::StatusOr<std::unique_ptr<SimModelRunner>> r =
      SimModelRunner::Create(ToyConfig(), FixedStepProfile(overhead_s), *kv, clock);
  EXPECT_TRUE(r.ok()) << r.status();
  Fixture f{std::move(*r), std::vector<int32_t>(8)};
  std::iota(f.blocks.begin(), f.blocks.end(), 0);
  return f;
}

TEST(SimModelRunnerTest, TokensAreDeterministicInVocabularyAndNeverEos) {
  Fixture f = Make(ClockMode::kVirtual);
  std::vector<int32_t> seen_counts(50, 0);
  for (int32_t last = 0; last < 50; ++last) {
    for (int64_t pos = 1; pos < 100; ++pos) {
      const int32_t t = f.runner->PseudoToken(last, pos);
      ASSERT_GE(t, 0);
      ASSERT_LT(t, 50);
      ASSERT_NE(t, 2);
      ASSERT_NE(t, 3);
      ++seen_counts[t];
      EXPECT_EQ(t, f.runner->PseudoToken(last, pos));
    }
  }
  int distinct = 0;
  for (int c : seen_counts) distinct += c > 0 ? 1 : 0;
  EXPECT_EQ(distinct, 48);  // every non-EOS id shows up
}

TEST(SimModelRunnerTest, ForwardTokensReturnsOneTokenPerSamplingChunk) {
  Fixture f = Make(ClockMode::kVirtual);
  const std::vector<int32_t> a = {5, 6, 7}, b = {9};
  std::vector<engine::BatchChunk> chunks(3);
  chunks[0] = {a, 0, f.blocks, true};
  chunks[1] = {b, 40, f.blocks, true};
  chunks[2] = {a, 10, f.blocks, false};
  std::vector<int32_t> tokens;
  ASSERT_TRUE(f.runner->ForwardTokens(chunks, &tokens).ok());
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0], f.runner->PseudoToken(7, 3));
  EXPECT_EQ(tokens[1], f.runner->PseudoToken(9, 41));
  // A second runner gives the same tokens: they depend on the chunk only.
  Fixture g = Make(ClockMode::kVirtual);
  std::vector<int32_t> again;
  ASSERT_TRUE(g.runner->ForwardTokens(chunks, &again).ok());
  EXPECT_EQ(again, tokens);
}

TEST(SimModelRunnerTest, VirtualClockSumsModeledStepsWithoutSleeping) {
  Fixture f = Make(ClockMode::kVirtual, /*overhead_s=*/10.0);
  const std::vector<int32_t> a = {5};
  const std::vector<engine::BatchChunk> chunks = {{a, 3, f.blocks, true}};
  std::vector<int32_t> tokens;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(f.runner->ForwardTokens(chunks, &tokens).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(f.runner->num_steps(), 5);
  EXPECT_NEAR(f.runner->device_seconds(), 5 * f.runner->last_step().total_s, 1e-9);
  EXPECT_NEAR(f.runner->last_step().total_s, 10.0, 1e-6);
}

TEST(SimModelRunnerTest, RealTimePacesToModeledTimeAndOverlapsHostWork) {
  constexpr double kStep = 0.01;
  constexpr int kSteps = 20;
  Fixture f = Make(ClockMode::kRealTime, kStep);
  const std::vector<int32_t> a = {5};
  const std::vector<engine::BatchChunk> chunks = {{a, 3, f.blocks, true}};
  std::vector<int32_t> tokens;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kSteps; ++i) {
    ASSERT_TRUE(f.runner->ForwardTokens(chunks, &tokens).ok());
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double modeled = f.runner->device_seconds();
  EXPECT_GE(wall, modeled - 1e-3);
  EXPECT_LT(wall, modeled * 1.25 + 0.02);
}

TEST(SimModelRunnerTest, ForwardIsFailedPrecondition) {
  Fixture f = Make(ClockMode::kVirtual);
  std::vector<float> logits;
  const absl::Status s = f.runner->Forward({}, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("ForwardTokens"));
}

TEST(SimModelRunnerTest, MalformedBatchIsInvalidArgumentNamingCulprit) {
  Fixture f = Make(ClockMode::kVirtual);
  std::vector<int32_t> tokens;
  const std::vector<int32_t> bad_token = {1, 50};
  std::vector<engine::BatchChunk> chunks = {{bad_token, 0, f.blocks, true}};
  absl::Status s = f.runner->ForwardTokens(chunks, &tokens);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token[1] = 50"));

  const std::vector<int32_t> ok = {1};
  const std::vector<int32_t> short_table = {0, 1};
  chunks = {{ok, 40, short_table, true}};  // position 40 needs 3 blocks of 16
  s = f.runner->ForwardTokens(chunks, &tokens);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("block_table has 2 blocks"));

  const std::vector<int32_t> outside = {64};
  chunks = {{ok, 0, outside, true}};
  s = f.runner->ForwardTokens(chunks, &tokens);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("block_table[0] = 64"));

  // A decode step entering a new block (position 16 is block 1's first).
  const std::vector<int32_t> second_outside = {0, -1};
  chunks = {{ok, 16, second_outside, true}};
  s = f.runner->ForwardTokens(chunks, &tokens);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("block_table[1] = -1"));
  EXPECT_EQ(f.runner->num_steps(), 0);
}

}  // namespace
}  // namespace rackserve::sim
