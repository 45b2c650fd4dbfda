#include "runtime/sampling/sampling_params.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::sampling {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kVocab = 100;

void ExpectInvalid(const SamplingParams& params, const char* field) {
  absl::Status status = ValidateSamplingParams(params, kVocab);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_THAT(status.message(), HasSubstr(field));
}

TEST(SamplingParamsTest, DefaultsAndTypicalValuesAreValid) {
  EXPECT_TRUE(ValidateSamplingParams({}, kVocab).ok());
  SamplingParams params{.temperature = 0.8f,
                        .top_k = 40,
                        .top_p = 0.95f,
                        .seed = 3,
                        .max_new_tokens = 512,
                        .stop_token_ids = {0, 99}};
  EXPECT_TRUE(ValidateSamplingParams(params, kVocab).ok());
  params.top_k = 1000;  // larger than the vocabulary: off
  params.top_p = 1.0f;
  EXPECT_TRUE(ValidateSamplingParams(params, kVocab).ok());
}

TEST(SamplingParamsTest, ErrorsNameTheField) {
  ExpectInvalid({.temperature = -0.5f}, "temperature");
  ExpectInvalid({.temperature = std::numeric_limits<float>::quiet_NaN()}, "temperature");
  ExpectInvalid({.temperature = std::numeric_limits<float>::infinity()}, "temperature");
  ExpectInvalid({.top_k = -1}, "top_k");
  ExpectInvalid({.top_p = 0.0f}, "top_p");
  ExpectInvalid({.top_p = 1.5f}, "top_p");
  ExpectInvalid({.top_p = std::numeric_limits<float>::quiet_NaN()}, "top_p");
  ExpectInvalid({.max_new_tokens = 0}, "max_new_tokens");
  ExpectInvalid({.stop_token_ids = {5, kVocab}}, "stop_token_ids[1] = 100");
  ExpectInvalid({.stop_token_ids = {-3}}, "stop_token_ids[0] = -3");
}

TEST(SamplingParamsTest, RejectsEmptyVocabulary) {
  absl::Status status = ValidateSamplingParams({}, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("vocab_size"));
}

}  // namespace
}  // namespace rackserve::sampling
