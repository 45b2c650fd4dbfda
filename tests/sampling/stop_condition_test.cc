#include "runtime/sampling/stop_condition.h"

#include <vector>

#include "gtest/gtest.h"

namespace rackserve::sampling {
namespace {

const std::vector<int32_t> kEos = {2, 128001};

TEST(CheckStopTest, GoesOnByDefault) {
  SamplingParams params{.max_new_tokens = 10};
  EXPECT_EQ(CheckStop(5, 1, params, kEos), FinishReason::kNone);
  EXPECT_EQ(CheckStop(5, 9, params, kEos), FinishReason::kNone);
}

TEST(CheckStopTest, EosStops) {
  SamplingParams params{.max_new_tokens = 10};
  EXPECT_EQ(CheckStop(2, 3, params, kEos), FinishReason::kEos);
  EXPECT_EQ(CheckStop(128001, 3, params, kEos), FinishReason::kEos);
  EXPECT_EQ(CheckStop(2, 3, params, {}), FinishReason::kNone);
}

TEST(CheckStopTest, IgnoreEosKeepsGoing) {
  SamplingParams params{.max_new_tokens = 10, .ignore_eos = true};
  EXPECT_EQ(CheckStop(2, 3, params, kEos), FinishReason::kNone);
  EXPECT_EQ(CheckStop(2, 10, params, kEos), FinishReason::kMaxTokens);
}

TEST(CheckStopTest, StopIdsAndMaxTokens) {
  SamplingParams params{.max_new_tokens = 4, .stop_token_ids = {7, 9}};
  EXPECT_EQ(CheckStop(9, 1, params, kEos), FinishReason::kStopToken);
  EXPECT_EQ(CheckStop(5, 4, params, kEos), FinishReason::kMaxTokens);
  EXPECT_EQ(CheckStop(5, 5, params, kEos), FinishReason::kMaxTokens);
}

TEST(CheckStopTest, OrderIsEosThenStopIdsThenMaxTokens) {
  SamplingParams params{.max_new_tokens = 4, .stop_token_ids = {2, 7}};
  // Token 2 is both EOS and a stop id, at the last allowed position.
  EXPECT_EQ(CheckStop(2, 4, params, kEos), FinishReason::kEos);
  EXPECT_EQ(CheckStop(7, 4, params, kEos), FinishReason::kStopToken);
  params.ignore_eos = true;
  EXPECT_EQ(CheckStop(2, 4, params, kEos), FinishReason::kStopToken);
}

TEST(FinishReasonTest, Names) {
  EXPECT_EQ(FinishReasonName(FinishReason::kNone), "none");
  EXPECT_EQ(FinishReasonName(FinishReason::kEos), "eos");
  EXPECT_EQ(FinishReasonName(FinishReason::kStopToken), "stop");
  EXPECT_EQ(FinishReasonName(FinishReason::kMaxTokens), "max_tokens");
  EXPECT_EQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_EQ(FinishReasonName(FinishReason::kCancelled), "cancelled");
}

}  // namespace
}  // namespace rackserve::sampling
