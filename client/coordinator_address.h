// Where rackctl finds the coordinator: --coordinator HOST:PORT, else the environment variable
// RACKSERVE_COORDINATOR, else the first line of <rack dir>/coordinator.addr, where the rack dir is
// RACKSERVE_RACK_DIR or, without it, the default (<build>/rack: what `deploy/rack up` writes).
// Pure functions of their arguments and the file system.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rackserve::client {

struct AddressSources {
  std::string flag;              // --coordinator; "" when not given
  std::string env_coordinator;   // $RACKSERVE_COORDINATOR; "" when unset
  std::string env_rack_dir;      // $RACKSERVE_RACK_DIR; "" when unset
  std::string default_rack_dir;  // used when env_rack_dir is empty
};

// The HOST:PORT to dial. NOT_FOUND naming the coordinator.addr file (and how to set the address)
// when no source gives one; INVALID_ARGUMENT naming the source when the address has no ":PORT".
absl::StatusOr<std::string> ResolveCoordinatorAddress(const AddressSources& sources);

// The sources from this process's environment; the default rack dir is "rack" next to the
// build's client/ folder that holds `executable` (/proc/self/exe): <build>/rack.
AddressSources AddressSourcesFromEnvironment(std::string_view flag, std::string_view executable);

}  // namespace rackserve::client
