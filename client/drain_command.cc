// rackctl drain VM [--resume]: stops routing new requests to a VM's replicas (requests there run
// to completion), or with --resume admits again.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/command_args.h"

namespace rackserve::client {
namespace {
constexpr char kCommand[] = "drain";
}  // namespace

int RunDrain(const CommandContext& context, const std::vector<std::string>& argv) {
  absl::StatusOr<CommandArgs> args = CommandArgs::Parse(argv, {}, {"resume"});
  if (!args.ok()) return ReportUsage(kCommand, args.status());
  if (args->positional().size() != 1) {
    return ReportUsage(
        kCommand, absl::InvalidArgumentError("give exactly one VM: rackctl drain VM [--resume]"));
  }
  absl::StatusOr<std::unique_ptr<RackConnection>> rack = Connect(context);
  if (!rack.ok()) return ReportFailure(kCommand, rack.status());
  v1::DrainVmRequest request;
  request.set_vm(args->positional()[0]);
  request.set_resume(args->Has("resume"));
  v1::DrainVmResponse response;
  grpc::ClientContext call;
  call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  const grpc::Status status = (*rack)->stub().DrainVm(&call, request, &response);
  if (!status.ok()) {
    return ReportFailure(kCommand,
                         (*rack)->Convert(status, absl::StrCat("DrainVm ", request.vm())));
  }
  std::printf("%s: %s (%lld requests still running there)\n", request.vm().c_str(),
              response.state().c_str(), static_cast<long long>(response.requests_left()));
  return kExitOk;
}

}  // namespace rackserve::client
