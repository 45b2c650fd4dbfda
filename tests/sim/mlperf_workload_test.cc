#include "runtime/sim/mlperf_workload.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::sim {
namespace {

using ::testing::HasSubstr;

WorkloadOptions Small(uint64_t seed) {
  WorkloadOptions o;
  o.num_prompts = 4000;
  o.seed = seed;
  return o;
}

TEST(MlperfWorkloadTest, LengthsInRangeWithMeansNearTargets) {
  absl::StatusOr<std::vector<WorkloadPrompt>> w = GenerateMlperfWorkload(Small(1));
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 4000u);
  double input = 0, output = 0;
  for (const WorkloadPrompt& p : *w) {
    ASSERT_GE(p.tokens.size(), 1u);
    ASSERT_LE(p.tokens.size(), 1023u);
    ASSERT_GE(p.output_tokens, 1);
    ASSERT_LE(p.output_tokens, 1023);
    for (int32_t t : p.tokens) {
      ASSERT_GE(t, 3);
      ASSERT_LT(t, 32000);
    }
    input += static_cast<double>(p.tokens.size());
    output += static_cast<double>(p.output_tokens);
  }
  EXPECT_NEAR(input / 4000, kAssumedMeanInputTokens, 0.03 * kAssumedMeanInputTokens);
  EXPECT_NEAR(output / 4000, kMlperfMeanOutputTokens, 0.03 * kMlperfMeanOutputTokens);
}

TEST(MlperfWorkloadTest, SameSeedSameWorkloadOtherSeedOtherWorkload) {
  absl::StatusOr<std::vector<WorkloadPrompt>> a = GenerateMlperfWorkload(Small(7));
  absl::StatusOr<std::vector<WorkloadPrompt>> b = GenerateMlperfWorkload(Small(7));
  absl::StatusOr<std::vector<WorkloadPrompt>> c = GenerateMlperfWorkload(Small(8));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  int same_as_b = 0, same_as_c = 0;
  for (size_t i = 0; i < a->size(); ++i) {
    same_as_b += (*a)[i].tokens == (*b)[i].tokens && (*a)[i].output_tokens == (*b)[i].output_tokens;
    same_as_c += (*a)[i].tokens == (*c)[i].tokens && (*a)[i].output_tokens == (*c)[i].output_tokens;
  }
  EXPECT_EQ(same_as_b, 4000);
  EXPECT_LT(same_as_c, 10);
}

TEST(MlperfWorkloadTest, BadOptionsAreInvalidArgumentNamingField) {
  WorkloadOptions o;
  o.num_prompts = 0;
  absl::StatusOr<std::vector<WorkloadPrompt>> w = GenerateMlperfWorkload(o);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("num_prompts"));
  o = WorkloadOptions();
  o.mean_output_tokens = 600;
  w = GenerateMlperfWorkload(o);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("mean_output_tokens = 600"));
  o = WorkloadOptions();
  o.first_token_id = 32000;
  w = GenerateMlperfWorkload(o);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("first_token_id"));
}

}  // namespace
}  // namespace rackserve::sim
