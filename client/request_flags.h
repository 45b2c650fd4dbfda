// The sampling flags `generate` shares with the request files: --max-new-tokens, --temperature,
// --top-p, --top-k, --seed, --ignore-eos, read into a RequestSpec.
#pragma once

#include <set>
#include <string>

#include "absl/status/status.h"
#include "client/command_args.h"
#include "client/request_spec.h"

namespace rackserve::client {

// The value flags and switches this reads (to pass to CommandArgs::Parse).
std::set<std::string> SamplingValueFlags();
std::set<std::string> SamplingSwitches();

// INVALID_ARGUMENT naming the flag for a value of the wrong type or out of range.
absl::Status ReadSamplingFlags(const CommandArgs& args, RequestSpec* spec);

}  // namespace rackserve::client
