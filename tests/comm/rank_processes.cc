#include "tests/comm/rank_processes.h"

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace rackserve::comm::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/rackserve-comm-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) std::abort();
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

RankProcesses::RankProcesses(int size, const std::function<absl::Status(int rank)>& body) {
  std::fflush(nullptr);
  for (int rank = 0; rank < size; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) std::abort();
    if (pid == 0) {
      const absl::Status status = body(rank);
      if (!status.ok()) std::fprintf(stderr, "rank %d: %s\n", rank, status.ToString().c_str());
      std::fflush(nullptr);
      ::_exit(status.ok() ? 0 : 1);
    }
    pids_.push_back(pid);
  }
}

RankProcesses::~RankProcesses() {
  for (pid_t& pid : pids_) {
    if (pid <= 0) continue;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
}

void RankProcesses::Kill(int rank) { ::kill(pids_[rank], SIGKILL); }

std::vector<int> RankProcesses::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<int> codes(pids_.size(), -1);
  for (size_t r = 0; r < pids_.size(); ++r) {
    while (pids_[r] > 0) {
      int status = 0;
      const pid_t done = ::waitpid(pids_[r], &status, WNOHANG);
      if (done == pids_[r]) {
        codes[r] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pids_[r] = 0;
      } else if (absl::Now() >= deadline) {
        ::kill(pids_[r], SIGKILL);
        ::waitpid(pids_[r], nullptr, 0);
        pids_[r] = 0;
      } else {
        absl::SleepFor(absl::Milliseconds(2));
      }
    }
  }
  return codes;
}

int64_t MonotonicNanos() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

WorldSpec TestWorld(int size, const std::string& model) {
  WorldSpec world;
  world.size = size;
  world.layout = absl::StrCat("tp", size);
  world.model = model;
  return world;
}

}  // namespace rackserve::comm::testing
