#include "proto/wire_conversion.h"

#include "absl/strings/str_cat.h"

namespace rackserve::wire {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<sampling::SamplingParams> FromProto(const v1::SamplingParams& proto,
                                                   int64_t vocab_size) {
  sampling::SamplingParams params;
  params.temperature = proto.temperature();
  params.top_k = proto.top_k();
  params.top_p = proto.top_p() == 0.0f ? 1.0f : proto.top_p();
  params.seed = proto.seed();
  params.max_new_tokens = proto.max_new_tokens() == 0 ? 16 : proto.max_new_tokens();
  params.stop_token_ids.assign(proto.stop_token_ids().begin(), proto.stop_token_ids().end());
  params.ignore_eos = proto.ignore_eos();
  const absl::Status valid = sampling::ValidateSamplingParams(params, vocab_size);
  if (!valid.ok()) return absl::Status(valid.code(), absl::StrCat("sampling.", valid.message()));
  return params;
}

void ToProto(const sampling::SamplingParams& params, v1::SamplingParams* proto) {
  proto->set_temperature(params.temperature);
  proto->set_top_k(params.top_k);
  proto->set_top_p(params.top_p);
  proto->set_seed(params.seed);
  proto->set_max_new_tokens(params.max_new_tokens);
  proto->mutable_stop_token_ids()->Assign(params.stop_token_ids.begin(),
                                          params.stop_token_ids.end());
  proto->set_ignore_eos(params.ignore_eos);
}

v1::FinishReason ToProto(sampling::FinishReason reason) {
  switch (reason) {
    case sampling::FinishReason::kNone:
      return v1::FINISH_REASON_UNSPECIFIED;
    case sampling::FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case sampling::FinishReason::kStopToken:
      return v1::FINISH_REASON_STOP_TOKEN;
    case sampling::FinishReason::kMaxTokens:
      return v1::FINISH_REASON_MAX_TOKENS;
    case sampling::FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case sampling::FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

sampling::FinishReason FromProto(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_EOS:
      return sampling::FinishReason::kEos;
    case v1::FINISH_REASON_STOP_TOKEN:
      return sampling::FinishReason::kStopToken;
    case v1::FINISH_REASON_MAX_TOKENS:
      return sampling::FinishReason::kMaxTokens;
    case v1::FINISH_REASON_LENGTH:
      return sampling::FinishReason::kLength;
    case v1::FINISH_REASON_CANCELLED:
      return sampling::FinishReason::kCancelled;
    default:
      return sampling::FinishReason::kNone;
  }
}

}  // namespace rackserve::wire
