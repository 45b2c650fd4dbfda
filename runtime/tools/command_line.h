// Command-line parsing shared by the rackserve tools: absl flags, spelled with dashes or
// underscores (`--logits-out` and `--logits_out` are the same flag).
#pragma once

#include <string>
#include <vector>

namespace rackserve::tools {

// Parses argv with absl::ParseCommandLine after turning dashes inside flag names into
// underscores. Returns the positional arguments (argv[0] first). Exits with a usage message on
// an unknown flag, as absl does. Also turns off absl::Mutex's deadlock detection, which the
// distribution's abseil leaves on: it builds a lock graph on every acquisition (measured a few
// percent of the coordinator's CPU on its hot path) and only reports, never prevents.
std::vector<std::string> ParseCommandLine(int argc, char** argv, const char* usage);

// Prints "<tool>: <message>" to stderr and exits with status 1 (tools' fatal errors only).
[[noreturn]] void Fail(const std::string& tool, const std::string& message);

}  // namespace rackserve::tools
