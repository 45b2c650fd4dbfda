// RunRankProcesses: starts the ranks of a multi-process replica on this machine and waits for
// them — `world_size` copies of the running program with its arguments plus `--rank=<r>` and
// `--rendezvous_dir=<dir>`, where <dir> is a fresh directory holding one rendezvous folder per
// communicator group: world/ (all ranks) and tp-stage<s>/ (the TP group of pipeline stage s).
//
// Rank 0 keeps this process's stdout; the other ranks' stdout is discarded (their stderr is
// kept). When a rank fails (non-zero exit or a signal) the others normally fail within seconds
// on their own (their communicators see the dead peer); any still running after `grace` are
// killed. Returns OK when every rank exited 0, else UNAVAILABLE naming the first rank that
// failed and how. Not thread-safe (it waits for its children with waitpid).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace rackserve::tools {

absl::Status RunRankProcesses(int world_size, int pp, const std::vector<std::string>& args,
                              absl::Duration grace);

}  // namespace rackserve::tools
