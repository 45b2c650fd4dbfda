// ProcessWatch: tells whether another process on this machine (same PID namespace) has exited,
// without blocking. It backs peer failure detection for ranks that share a host, whose UCX
// endpoints cannot use UCX's own peer error handling (UCX 1.13 drops the shared memory
// transports for endpoints that ask for it).
//
// Built on a pidfd, so a reused pid is never mistaken for the peer; kernels without pidfd fall
// back to kill(pid, 0). Owns the descriptor; movable, not copyable; not thread-safe.
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace rackserve::comm::internal {

class ProcessWatch {
 public:
  // Watches `pid`; NOT_FOUND when no such process exists (it already exited).
  static absl::StatusOr<ProcessWatch> Open(pid_t pid);

  ProcessWatch(ProcessWatch&& other) noexcept;
  ProcessWatch& operator=(ProcessWatch&& other) noexcept;
  ProcessWatch(const ProcessWatch&) = delete;
  ProcessWatch& operator=(const ProcessWatch&) = delete;
  ~ProcessWatch();

  pid_t pid() const { return pid_; }
  // True once the process has exited (a zombie counts as exited).
  bool Exited() const;

 private:
  ProcessWatch(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}

  pid_t pid_;
  int pidfd_;  // -1 when the kernel has no pidfd
};

// Identifies this machine and PID namespace ("<boot id>/<pid namespace>"): two processes may
// watch each other's pids when their identities are equal and not empty. Empty when unknown.
std::string LocalProcessNamespace();

}  // namespace rackserve::comm::internal
