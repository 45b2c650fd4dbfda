#include "client/rack_connection.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace rackserve::client {

RackConnection::RackConnection(std::string address) : address_(std::move(address)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  stub_ = v1::Rack::NewStub(
      grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args));
}

absl::Status RackConnection::Convert(const grpc::Status& status, std::string_view call) const {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      absl::StrCat(std::string(call), " on coordinator ", address_, ": ", status.error_message()));
}

absl::StatusOr<v1::Topology> RackConnection::Topology() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::Topology topology;
  const grpc::Status status = stub_->GetTopology(&context, v1::TopologyRequest(), &topology);
  if (!status.ok()) return Convert(status, "GetTopology");
  return topology;
}

v1::GenerateRequest ToGenerateRequest(const RequestSpec& spec) {
  v1::GenerateRequest request;
  request.set_request_id(spec.id);
  if (spec.prompt_ids.empty()) {
    request.set_prompt_text(spec.prompt);
  } else {
    request.mutable_prompt_token_ids()->Add(spec.prompt_ids.begin(), spec.prompt_ids.end());
  }
  v1::SamplingParams* sampling = request.mutable_sampling();
  sampling->set_temperature(spec.temperature);
  sampling->set_top_k(spec.top_k);
  sampling->set_top_p(spec.top_p);
  sampling->set_seed(spec.seed);
  sampling->set_max_new_tokens(spec.max_new_tokens);
  sampling->mutable_stop_token_ids()->Add(spec.stop_token_ids.begin(), spec.stop_token_ids.end());
  sampling->set_ignore_eos(spec.ignore_eos);
  return request;
}

std::string FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_EOS:
      return "eos";
    case v1::FINISH_REASON_STOP_TOKEN:
      return "stop_token";
    case v1::FINISH_REASON_MAX_TOKENS:
      return "max_tokens";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    default:
      return "";
  }
}

std::string AuditLine(const v1::Audit& audit) {
  return absl::StrCat("delivered ", audit.delivered_tokens(), ", worker-reported ",
                      audit.worker_reported_tokens(), ", received ", audit.received_tokens(),
                      ", discarded ", audit.discarded_tokens(), ", unreported ",
                      audit.unreported_tokens(), ": ", audit.exact() ? "exact" : "NOT exact");
}

}  // namespace rackserve::client
