// What every rackctl command shares: how it reaches the coordinator and how it ends.
//
// Exit codes (binding, rackctl_cli.md): 0 success, 1 a failed operation (message on stderr naming
// what failed), 2 bad usage. Each command is `int Run<Name>(const CommandContext&, args)` in its
// own .cc; args are the arguments after the command's name.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/coordinator_address.h"
#include "client/rack_connection.h"

namespace rackserve::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

struct CommandContext {
  AddressSources address_sources;
};

// Prints "rackctl <command>: <message>" on stderr and returns kExitUsage for INVALID_ARGUMENT
// (bad flags), kExitFailed otherwise.
int ReportUsage(std::string_view command, const absl::Status& status);
int ReportFailure(std::string_view command, const absl::Status& status);

// A connection to the coordinator the context's sources name (NOT_FOUND when none does).
absl::StatusOr<std::unique_ptr<RackConnection>> Connect(const CommandContext& context);

int RunStatus(const CommandContext& context, const std::vector<std::string>& args);
int RunGenerate(const CommandContext& context, const std::vector<std::string>& args);
int RunBatch(const CommandContext& context, const std::vector<std::string>& args);
int RunBench(const CommandContext& context, const std::vector<std::string>& args);
int RunTop(const CommandContext& context, const std::vector<std::string>& args);
int RunDrain(const CommandContext& context, const std::vector<std::string>& args);
int RunPreflight(const CommandContext& context, const std::vector<std::string>& args);

}  // namespace rackserve::client
