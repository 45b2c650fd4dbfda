#include "client/synthetic_dataset.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::client {
namespace {

using ::testing::HasSubstr;

double MeanOutput(const std::vector<DatasetSample>& samples) {
  double sum = 0;
  for (const DatasetSample& s : samples) sum += static_cast<double>(s.output_tokens);
  return sum / static_cast<double>(samples.size());
}

TEST(SyntheticDatasetTest, MlperfLikeLengths) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    DatasetOptions options;
    options.count = 20000;
    options.seed = seed;
    auto samples = MakeSyntheticDataset(options);
    ASSERT_TRUE(samples.ok()) << samples.status();
    double input_sum = 0;
    for (const DatasetSample& s : *samples) {
      ASSERT_GE(s.output_tokens, 1);
      ASSERT_LE(s.output_tokens, 1023);
      ASSERT_GE(s.prompt_ids.size(), 1u);
      ASSERT_LE(s.prompt_ids.size(), 1023u);
      input_sum += static_cast<double>(s.prompt_ids.size());
      for (int32_t id : s.prompt_ids) {
        ASSERT_GE(id, 3);
        ASSERT_LT(id, 32000);
      }
    }
    EXPECT_NEAR(MeanOutput(*samples), 294, 294 * 0.04) << "seed " << seed;
    // The simulated GPUs' calibration workload (runtime/sim/mlperf_workload.h).
    EXPECT_NEAR(input_sum / 20000, 400, 400 * 0.04) << "seed " << seed;
  }
}

TEST(SyntheticDatasetTest, SeededAndScaledForSmallRacks) {
  DatasetOptions options;
  options.count = 5000;
  options.seed = 7;
  auto a = MakeSyntheticDataset(options);
  auto b = MakeSyntheticDataset(options);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < a->size(); ++i) {
    ASSERT_EQ((*a)[i].prompt_ids, (*b)[i].prompt_ids);
    ASSERT_EQ((*a)[i].output_tokens, (*b)[i].output_tokens);
  }
  options.max_output = 64;
  options.vocab_size = 512;
  options.max_context = 96;
  auto small = MakeSyntheticDataset(options);
  ASSERT_TRUE(small.ok());
  for (const DatasetSample& s : *small) {
    ASSERT_LE(s.output_tokens, 64);
    ASSERT_LE(static_cast<int64_t>(s.prompt_ids.size()) + s.output_tokens, 96);
    for (int32_t id : s.prompt_ids) ASSERT_LT(id, 512);
  }
  EXPECT_NEAR(MeanOutput(*small), 294.0 * 64 / 1023, 294.0 * 64 / 1023 * 0.08);
}

TEST(SyntheticDatasetTest, BadOptionsNameTheOption) {
  DatasetOptions options;
  options.max_output = 1024;
  auto bad = MakeSyntheticDataset(options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_output"));
  options = {};
  options.count = 0;
  bad = MakeSyntheticDataset(options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("count"));
}

}  // namespace
}  // namespace rackserve::client
