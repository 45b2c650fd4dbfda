// The gRPC edge of rackctl: a stub for the coordinator's rackserve.v1.Rack service, conversion of
// RequestSpec to the wire request, and gRPC statuses turned into absl::Status naming the call and
// the coordinator. Proto types go no further than this edge and the commands' .cc files.
// RackConnection is thread-safe (gRPC stubs are).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/request_spec.h"
#include "grpcpp/support/status.h"
#include "rackserve/v1/rack.grpc.pb.h"

namespace rackserve::client {

class RackConnection {
 public:
  // Creates the channel (connecting happens on the first call).
  explicit RackConnection(std::string address);

  v1::Rack::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }

  // The gRPC status as an absl::Status with the same code and the message
  // "<call> on coordinator <address>: <message>".
  absl::Status Convert(const grpc::Status& status, std::string_view call) const;

  // The rack's topology (GetTopology, 10 s deadline); errors as Convert makes them.
  absl::StatusOr<v1::Topology> Topology();

 private:
  std::string address_;
  std::unique_ptr<v1::Rack::Stub> stub_;
};

v1::GenerateRequest ToGenerateRequest(const RequestSpec& spec);

// "eos", "stop_token", "max_tokens", "length", "cancelled", or "" when unfinished.
std::string FinishReasonName(v1::FinishReason reason);

// The coordinator's audit in one line: "delivered D, worker-reported R, received V, discarded X,
// unreported U: exact" (or "NOT exact").
std::string AuditLine(const v1::Audit& audit);

}  // namespace rackserve::client
