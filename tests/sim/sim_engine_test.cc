#include "runtime/sim/sim_engine.h"

#include <chrono>
#include <map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/model_generator.h"
#include "runtime/sim/mlperf_workload.h"
#include "runtime/sim/offline_run.h"

namespace rackserve::sim {
namespace {

using ::testing::HasSubstr;

struct SimEngine {
  std::unique_ptr<engine::Engine> engine;
  SimModelRunner* runner = nullptr;
};

SimEngine Make(const std::string& profile, ClockMode clock = ClockMode::kVirtual) {
  SimEngineOptions options;
  options.gpu_profile = profile;
  options.clock = clock;
  SimEngine e;
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = CreateSimEngine(options, &e.runner);
  EXPECT_TRUE(engine.ok()) << engine.status();
  e.engine = std::move(*engine);
  return e;
}

// Calibration: one simulated GPU on 4,000 offline MLPerf-like requests, in virtual time, gives
// the profile's target throughput within 5%. (The profiles are fitted on the full 24,576-prompt
// workload; 4,000 requests land ~3% below it, 2,000 ~6% below: the final ramp-down, when the batch
// drains, weighs more in a short run.)
class OfflineThroughputTest : public ::testing::TestWithParam<std::pair<std::string, double>> {};

TEST_P(OfflineThroughputTest, WithinFivePercentOfTarget) {
  const auto& [profile, target] = GetParam();
  WorkloadOptions w;
  w.num_prompts = 4000;
  absl::StatusOr<std::vector<WorkloadPrompt>> prompts = GenerateMlperfWorkload(w);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  SimEngine e = Make(profile);
  absl::StatusOr<OfflineResult> r = RunOffline(e.engine.get(), *e.runner, *prompts);
  ASSERT_TRUE(r.ok()) << r.status();
  int64_t expected_tokens = 0;
  for (const WorkloadPrompt& p : *prompts) expected_tokens += p.output_tokens;
  EXPECT_EQ(r->generated_tokens, expected_tokens);
  EXPECT_NEAR(r->tokens_per_second(), target, 0.05 * target) << profile;
}

INSTANTIATE_TEST_SUITE_P(Profiles, OfflineThroughputTest,
                         ::testing::Values(std::pair<std::string, double>{"gb300", 15300},
                                           std::pair<std::string, double>{"gb200", 13000},
                                           std::pair<std::string, double>{"h200", 4400}));

// Runs every request to the end; returns the events by request id.
std::map<uint64_t, std::vector<engine::TokenEvent>> Drain(engine::Engine* engine) {
  std::map<uint64_t, std::vector<engine::TokenEvent>> events;
  while (engine->has_work()) {
    absl::StatusOr<std::vector<engine::TokenEvent>> step = engine->Step();
    EXPECT_TRUE(step.ok()) << step.status();
    if (!step.ok()) break;
    for (engine::TokenEvent& e : *step) events[e.id].push_back(std::move(e));
  }
  return events;
}

TEST(SimEngineTest, MaxNewTokensIsExactAndTokensAreDeterministic) {
  std::map<uint64_t, std::vector<engine::TokenEvent>> runs[2];
  for (auto& run : runs) {
    SimEngine e = Make("gb300");
    for (uint64_t id = 0; id < 20; ++id) {
      engine::Request r;
      r.id = id;
      r.prompt.assign(5 + id * 37, static_cast<int32_t>(100 + id));
      r.sampling.max_new_tokens = 1 + static_cast<int64_t>(id) * 13;
      ASSERT_TRUE(e.engine->Submit(std::move(r)).ok());
    }
    run = Drain(e.engine.get());
  }
  ASSERT_EQ(runs[0].size(), 20u);
  for (const auto& [id, events] : runs[0]) {
    ASSERT_EQ(static_cast<int64_t>(events.size()), 1 + static_cast<int64_t>(id) * 13) << id;
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].index, static_cast<int64_t>(i));
      EXPECT_NE(events[i].token, 2);  // never EOS
      EXPECT_EQ(events[i].token, runs[1].at(id)[i].token);
    }
    EXPECT_EQ(events.back().finish, sampling::FinishReason::kMaxTokens);
  }
}

TEST(SimEngineTest, StopTokenEndsRequest) {
  SimEngine e = Make("gb300");
  engine::Request r;
  r.id = 7;
  r.prompt = {11, 12, 13};
  r.sampling.max_new_tokens = 50;
  // The simulated model's second token for this prompt.
  const int32_t first = e.runner->PseudoToken(13, 3);
  r.sampling.stop_token_ids = {e.runner->PseudoToken(first, 4)};
  ASSERT_TRUE(e.engine->Submit(std::move(r)).ok());
  auto events = Drain(e.engine.get());
  ASSERT_EQ(events[7].size(), 2u);
  EXPECT_EQ(events[7][0].token, first);
  EXPECT_EQ(events[7][1].finish, sampling::FinishReason::kStopToken);
}

TEST(SimEngineTest, ReturnLogitsIsRejected) {
  SimEngine e = Make("gb300");
  engine::Request r;
  r.id = 1;
  r.prompt = {11};
  r.return_logits = true;
  const absl::Status s = e.engine->Submit(std::move(r));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("return_logits"));
}

TEST(SimEngineTest, KvCapacityComesFromProfile) {
  SimEngine e = Make("gb300");
  const int64_t expected = e.runner->time_model().kv_capacity_tokens();
  EXPECT_LE(e.engine->kv_config().capacity_tokens(), expected);
  EXPECT_GT(e.engine->kv_config().capacity_tokens(), expected - 32);
}

TEST(SimEngineTest, RealTimeRunTakesModeledTime) {
  SimEngine e = Make("gb300", ClockMode::kRealTime);
  for (uint64_t id = 0; id < 4; ++id) {
    engine::Request r;
    r.id = id;
    r.prompt.assign(100, 42);
    r.sampling.max_new_tokens = 40;
    ASSERT_TRUE(e.engine->Submit(std::move(r)).ok());
  }
  const auto t0 = std::chrono::steady_clock::now();
  Drain(e.engine.get());
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double modeled = e.runner->device_seconds();
  EXPECT_GT(modeled, 0.1);  // ~40 steps of ~5 ms
  EXPECT_GE(wall, modeled - 1e-3);
  EXPECT_LT(wall, modeled * 1.2 + 0.02);
}

TEST(SimEngineTest, SpeedupDividesModeledTime) {
  double seconds[2];
  for (int i = 0; i < 2; ++i) {
    SimEngineOptions options;
    options.clock = ClockMode::kVirtual;
    options.speedup = i == 0 ? 1.0 : 2.0;
    SimModelRunner* runner = nullptr;
    absl::StatusOr<std::unique_ptr<engine::Engine>> e = CreateSimEngine(options, &runner);
    ASSERT_TRUE(e.ok()) << e.status();
    engine::Request r;
    r.id = 1;
    r.prompt.assign(300, 42);
    r.sampling.max_new_tokens = 20;
    ASSERT_TRUE((*e)->Submit(std::move(r)).ok());
    Drain(e->get());
    seconds[i] = runner->device_seconds();
  }
  EXPECT_NEAR(seconds[1], seconds[0] / 2, 1e-9);
}

// A token-producing runner that breaks its contract: the engine fails the step with INTERNAL.
class WrongCountRunner : public engine::ModelRunner {
 public:
  WrongCountRunner() { config_ = *model::PresetModelConfig("tiny"); }
  const model::ModelConfig& config() const override { return config_; }
  bool ProducesTokens() const override { return true; }
  absl::Status Forward(std::span<const engine::BatchChunk>, std::vector<float>*) override {
    return absl::FailedPreconditionError("unused");
  }
  absl::Status ForwardTokens(std::span<const engine::BatchChunk>,
                             std::vector<int32_t>* tokens) override {
    tokens->clear();
    return absl::OkStatus();
  }

 private:
  model::ModelConfig config_;
};

TEST(SimEngineTest, EngineRejectsWrongTokenCountFromRunner) {
  absl::StatusOr<kv::KvCacheConfig> kv = kv::KvCacheConfig::Create(16, 64);
  ASSERT_TRUE(kv.ok());
  absl::StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::Engine::Create(std::make_unique<WrongCountRunner>(), *kv, engine::EngineOptions(),
                             std::make_unique<base::ThreadPool>(1));
  ASSERT_TRUE(e.ok()) << e.status();
  engine::Request r;
  r.id = 1;
  r.prompt = {5, 6};
  ASSERT_TRUE((*e)->Submit(std::move(r)).ok());
  absl::StatusOr<std::vector<engine::TokenEvent>> step = (*e)->Step();
  EXPECT_EQ(step.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(step.status().message(), HasSubstr("returned 0 tokens for 1 sampling chunks"));
}

TEST(SimEngineTest, BadOptionsNameTheCulprit) {
  SimEngineOptions options;
  options.gpu_profile = "tpu9";
  absl::StatusOr<std::unique_ptr<engine::Engine>> e = CreateSimEngine(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(e.status().message(), HasSubstr("tpu9"));
  options = SimEngineOptions();
  options.model = "llama9-1t";
  e = CreateSimEngine(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(e.status().message(), HasSubstr("llama9-1t"));
  options = SimEngineOptions();
  options.model = "/nonexistent/config.json";
  e = CreateSimEngine(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(e.status().message(), HasSubstr("/nonexistent/config.json"));
  options = SimEngineOptions();
  options.max_batch = 0;
  e = CreateSimEngine(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("max_running"));
  options = SimEngineOptions();
  options.speedup = 0;
  e = CreateSimEngine(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("speedup"));
  options = SimEngineOptions();
  options.custom_profile = *GpuProfileByName("h200");
  options.custom_profile->bandwidth_efficiency = 0;
  e = CreateSimEngine(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("bandwidth_efficiency"));
}

}  // namespace
}  // namespace rackserve::sim
