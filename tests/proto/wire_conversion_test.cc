#include "proto/wire_conversion.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::wire {
namespace {

using ::testing::HasSubstr;

TEST(WireConversionTest, StatusCodesMapOneToOne) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), code == 0 ? "" : "why");
    const grpc::Status g = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(FromGrpcStatus(g), status);
  }
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("full")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(WireConversionTest, SamplingDefaultsAndRoundTrip) {
  v1::SamplingParams proto;
  auto params = FromProto(proto, 100);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->top_p, 1.0f);
  EXPECT_EQ(params->max_new_tokens, 16);
  EXPECT_EQ(params->temperature, 0.0f);

  sampling::SamplingParams s;
  s.temperature = 0.7f;
  s.top_k = 40;
  s.top_p = 0.9f;
  s.seed = 123;
  s.max_new_tokens = 77;
  s.stop_token_ids = {5, 6};
  s.ignore_eos = true;
  v1::SamplingParams wire;
  ToProto(s, &wire);
  auto back = FromProto(wire, 100);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->temperature, s.temperature);
  EXPECT_EQ(back->top_k, s.top_k);
  EXPECT_EQ(back->top_p, s.top_p);
  EXPECT_EQ(back->seed, s.seed);
  EXPECT_EQ(back->max_new_tokens, s.max_new_tokens);
  EXPECT_EQ(back->stop_token_ids, s.stop_token_ids);
  EXPECT_EQ(back->ignore_eos, s.ignore_eos);
}

TEST(WireConversionTest, BadSamplingNamesTheField) {
  v1::SamplingParams proto;
  proto.set_top_p(2.0f);
  absl::Status s = FromProto(proto, 100).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("sampling.top_p"));
  proto.set_top_p(0.5f);
  proto.add_stop_token_ids(100);
  s = FromProto(proto, 100).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("sampling.stop_token_ids"));
}

TEST(WireConversionTest, FinishReasonsRoundTrip) {
  for (auto r : {sampling::FinishReason::kNone, sampling::FinishReason::kEos,
                 sampling::FinishReason::kStopToken, sampling::FinishReason::kMaxTokens,
                 sampling::FinishReason::kLength, sampling::FinishReason::kCancelled}) {
    EXPECT_EQ(FromProto(ToProto(r)), r);
  }
}

}  // namespace
}  // namespace rackserve::wire
