#include "runtime/comm/internal/process_watch.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rackserve::comm::internal {

absl::StatusOr<ProcessWatch> ProcessWatch::Open(pid_t pid) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("invalid pid ", pid));
#ifdef SYS_pidfd_open
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) return ProcessWatch(pid, pidfd);
  if (errno == ESRCH) return absl::NotFoundError(absl::StrCat("process ", pid, " does not exist"));
#endif
  if (::kill(pid, 0) != 0 && errno == ESRCH) {
    return absl::NotFoundError(absl::StrCat("process ", pid, " does not exist"));
  }
  return ProcessWatch(pid, -1);
}

ProcessWatch::ProcessWatch(ProcessWatch&& other) noexcept
    : pid_(other.pid_), pidfd_(std::exchange(other.pidfd_, -1)) {}

ProcessWatch& ProcessWatch::operator=(ProcessWatch&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) ::close(pidfd_);
    pid_ = other.pid_;
    pidfd_ = std::exchange(other.pidfd_, -1);
  }
  return *this;
}

ProcessWatch::~ProcessWatch() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

bool ProcessWatch::Exited() const {
  if (pidfd_ < 0) return ::kill(pid_, 0) != 0 && errno == ESRCH;
  pollfd fd{pidfd_, POLLIN, 0};
  return ::poll(&fd, 1, 0) > 0;  // a pidfd polls readable once its process has exited
}

std::string LocalProcessNamespace() {
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  char ns[128];
  const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns);
  if (boot_id.empty() || n <= 0) return "";
  return absl::StrCat(boot_id, "/", std::string(ns, static_cast<size_t>(n)));
}

}  // namespace rackserve::comm::internal
