#include "client/command.h"

#include <cstdio>

namespace rackserve::client {

int ReportUsage(std::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "rackctl %s: %s\n", std::string(command).c_str(),
               std::string(status.message()).c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailed;
}

int ReportFailure(std::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "rackctl %s: %s\n", std::string(command).c_str(),
               std::string(status.message()).c_str());
  return kExitFailed;
}

absl::StatusOr<std::unique_ptr<RackConnection>> Connect(const CommandContext& context) {
  absl::StatusOr<std::string> address = ResolveCoordinatorAddress(context.address_sources);
  if (!address.ok()) return address.status();
  return std::make_unique<RackConnection>(*std::move(address));
}

}  // namespace rackserve::client
