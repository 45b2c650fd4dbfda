// WorldSpec: the agreed description of one communicator group (a replica's TP x PP ranks).
//
// Every rank of a group presents the same WorldSpec to the rendezvous; a rank whose spec differs
// (another size, layout, model or protocol version) is refused before any connection is made,
// so two replicas, or two builds of the worker, never end up wired together. A plain value:
// copyable, safe to share across threads.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace rackserve::comm {

struct WorldSpec {
  // Ranks are numbered in [0, size); tags carry them in 16 bits.
  static constexpr int kMaxSize = 4096;
  // The version of the rendezvous record and of the communicators' wire protocol.
  static constexpr int kProtocolVersion = 1;

  int size = 1;                             // ranks in the group, in [1, kMaxSize]
  std::string layout;                       // e.g. "tp2-pp2"
  std::string model;                        // model identity, e.g. a path or a config hash
  int protocol_version = kProtocolVersion;  // must equal on every rank

  // INVALID_ARGUMENT naming the field (`size`) and its value.
  absl::Status Validate() const;
  // INVALID_ARGUMENT naming `rank` and the size when rank is outside [0, size).
  absl::Status ValidateRank(int rank) const;
};

// OK when `theirs` (published by rank `their_rank`) equals `mine` (rank `my_rank`) field by
// field; otherwise FAILED_PRECONDITION naming the first differing field (size, layout, model,
// protocol_version) and both ranks' values.
absl::Status CheckSameWorld(const WorldSpec& mine, int my_rank, const WorldSpec& theirs,
                            int their_rank);

}  // namespace rackserve::comm
