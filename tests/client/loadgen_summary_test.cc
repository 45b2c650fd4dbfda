#include "client/loadgen_summary.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rackserve::client {
namespace {

using ::testing::HasSubstr;

TEST(LoadgenSummaryTest, NearestRankPercentiles) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 0.5), 50);
  EXPECT_EQ(Percentile(v, 0.99), 99);
  EXPECT_EQ(Percentile(v, 1.0), 100);
  EXPECT_EQ(Percentile(v, 0.0), 1);
  EXPECT_EQ(Percentile({}, 0.99), 0);
  EXPECT_EQ(Percentile({3.0}, 0.99), 3);
}

TEST(LoadgenSummaryTest, ScenariosAndLimits) {
  EXPECT_EQ(*ParseScenario("server"), Scenario::kServer);
  auto bad = ParseScenario("batch");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("\"batch\""));
  EXPECT_DOUBLE_EQ(LimitsFor(Scenario::kServer).ttft_p99_seconds, 2.0);
  EXPECT_DOUBLE_EQ(LimitsFor(Scenario::kServer).tpot_p99_seconds, 0.2);
  EXPECT_DOUBLE_EQ(LimitsFor(Scenario::kInteractive).ttft_p99_seconds, 0.45);
  EXPECT_DOUBLE_EQ(LimitsFor(Scenario::kInteractive).tpot_p99_seconds, 0.04);
  EXPECT_DOUBLE_EQ(LimitsFor(Scenario::kOffline).ttft_p99_seconds, 0);
}

// 100 requests of 11 tokens, TTFT 0.1 s; TPOT (latency - ttft) / 10.
BenchRun MakeRun(Scenario scenario, double slow_tpot, int slow_count) {
  BenchRun run;
  run.scenario = scenario;
  run.duration_seconds = 10;
  for (int i = 0; i < 100; ++i) {
    const double tpot = i < slow_count ? slow_tpot : 0.01;
    run.samples.push_back({true, 11, 0.1, 0.1 + 10 * tpot});
  }
  return run;
}

TEST(LoadgenSummaryTest, ThroughputAndVerdict) {
  BenchSummary s = Summarize(MakeRun(Scenario::kInteractive, 0.05, 1));
  EXPECT_DOUBLE_EQ(s.samples_per_second, 10);
  EXPECT_DOUBLE_EQ(s.tokens_per_second, 110);
  EXPECT_NEAR(s.tpot.p99, 0.01, 1e-12);  // 1 slow request of 100 is above p99
  EXPECT_TRUE(s.valid);
  s = Summarize(MakeRun(Scenario::kInteractive, 0.05, 2));  // 2 of 100: p99 is slow
  EXPECT_NEAR(s.tpot.p99, 0.05, 1e-12);
  EXPECT_FALSE(s.tpot_ok);
  EXPECT_FALSE(s.valid);
  s = Summarize(MakeRun(Scenario::kServer, 0.05, 2));  // within the server's 200 ms
  EXPECT_TRUE(s.valid);

  BenchRun failed = MakeRun(Scenario::kOffline, 0.05, 50);
  failed.samples[3].completed = false;
  s = Summarize(failed);
  EXPECT_EQ(s.completed, 99);
  EXPECT_FALSE(s.all_completed);
  EXPECT_FALSE(s.valid);
}

TEST(LoadgenSummaryTest, SummaryTextAndJson) {
  const BenchSummary s = Summarize(MakeRun(Scenario::kServer, 0.05, 2));
  RackFigure rack;
  rack.present = true;
  rack.tokens_per_second = 110;
  rack.vms = {{"vm00", 50}, {"vm01", 60}};
  rack.audit = "delivered 1100, worker-reported 1100: exact";
  rack.gpus_own_tokens_per_second = 125;
  rack.gpus_step_tokens_per_second = 130;
  const std::string text = FormatSummary(s, rack);
  EXPECT_THAT(text, HasSubstr("Sum of the GPUs' own figures    : 125.00 (time with work; the rack "
                              "reached 88.0% of it)"));
  EXPECT_THAT(text, HasSubstr("Sum of the GPUs' step figures   : 130.00 (time in engine steps "
                              "only)"));
  EXPECT_THAT(text, HasSubstr("Scenario : Server\n"));
  EXPECT_THAT(text, HasSubstr("Completed samples per second    : 10.00\n"));
  EXPECT_THAT(text, HasSubstr("Tokens per second               : 110.00\n"));
  EXPECT_THAT(text, HasSubstr("Result is : VALID\n"));
  EXPECT_THAT(text, HasSubstr("  vm01     tokens per second    : 60.00\n"));
  EXPECT_THAT(text, HasSubstr("Per-VM min / max (spread)       : 50.00 / 60.00 (18.2%)"));
  EXPECT_THAT(text, HasSubstr("TPOT p99 (ms)                   : 50.00\n"));
  EXPECT_THAT(text, HasSubstr("Audit                           : delivered 1100, worker-reported "
                              "1100: exact"));
  const auto json = nlohmann::json::parse(SummaryJson(s, rack));
  EXPECT_EQ(json["result"], "VALID");
  EXPECT_EQ(json["scenario"], "Server");
  EXPECT_DOUBLE_EQ(json["tokens_per_second"].get<double>(), 110);
  EXPECT_EQ(json["rack"]["vms"].size(), 2u);
  EXPECT_NEAR(json["rack"]["vm_spread_percent"].get<double>(), 18.18, 0.01);
  EXPECT_DOUBLE_EQ(json["rack"]["gpus_own_tokens_per_second"].get<double>(), 125);
}

}  // namespace
}  // namespace rackserve::client
