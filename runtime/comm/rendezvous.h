// Rendezvous: how the ranks of one group find each other before a communicator connects.
//
// Each rank publishes one opaque blob (a UCX worker address, an NCCL unique id, or nothing) with
// its WorldSpec, and gets back every rank's blob once all have published. The rendezvous also
// checks that all ranks describe the same world. Implementations: a shared directory
// (file_rendezvous.h); the coordinator hands out the same data over gRPC.
//
// Thread-safety: one Exchange per rank and object; implementations say more.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/comm/world_spec.h"

namespace rackserve::comm {

class Rendezvous {
 public:
  virtual ~Rendezvous() = default;

  // Publishes this rank's blob and returns all ranks' blobs (index = rank) once every rank has
  // published. Errors:
  //   INVALID_ARGUMENT     `world` is invalid, rank is outside [0, size), or rank has already
  //                        published (names the rank)
  //   FAILED_PRECONDITION  another rank's WorldSpec differs (names the field and both values)
  //   DEADLINE_EXCEEDED    not every rank published within `timeout` (names the missing ranks)
  //   DATA_LOSS            another rank's record is corrupt (names it)
  virtual absl::StatusOr<std::vector<std::string>> Exchange(const WorldSpec& world, int rank,
                                                            std::string blob,
                                                            absl::Duration timeout) = 0;
};

}  // namespace rackserve::comm
