// Conversions between the rackserve.v1 wire types and the runtime's value types, shared by the
// coordinator and the workers: the edge where proto types stop. Also the one mapping between
// absl::Status and grpc::Status (their codes are the same numbers: a 1:1 mapping).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/support/status.h"
#include "rackserve/v1/rack.pb.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/stop_condition.h"

namespace rackserve::wire {

// The worker <-> coordinator protocol version (RegisterRequest.protocol_version): a coordinator
// refuses workers that speak another. 2: the multiplexed Serve stream replaced the per-request
// Submit and Cancel RPCs.
inline constexpr int kProtocolVersion = 2;

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Validated sampling parameters: INVALID_ARGUMENT naming the field ("sampling.top_p = 2 ...").
// Unset fields take the runtime's defaults: top_p 0 reads as 1, max_new_tokens 0 as 16.
absl::StatusOr<sampling::SamplingParams> FromProto(const v1::SamplingParams& proto,
                                                   int64_t vocab_size);
void ToProto(const sampling::SamplingParams& params, v1::SamplingParams* proto);

v1::FinishReason ToProto(sampling::FinishReason reason);
sampling::FinishReason FromProto(v1::FinishReason reason);

}  // namespace rackserve::wire
