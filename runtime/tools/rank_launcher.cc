#include "runtime/tools/rank_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"

namespace rackserve::tools {
namespace {

namespace fs = std::filesystem;

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return "stopped";
}

}  // namespace

absl::Status RunRankProcesses(int world_size, int pp, const std::vector<std::string>& args,
                              absl::Duration grace) {
  std::string dir_template = (fs::temp_directory_path() / "rackserve-ranks-XXXXXX").string();
  if (mkdtemp(dir_template.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  const std::string dir = dir_template;
  std::error_code ec;
  fs::create_directory(dir + "/world", ec);
  for (int s = 0; s < pp && !ec; ++s) fs::create_directory(absl::StrCat(dir, "/tp-stage", s), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));

  std::map<pid_t, int> running;  // pid -> rank
  for (int rank = 0; rank < world_size; ++rank) {
    std::vector<std::string> argv_strings = args;
    argv_strings.push_back(absl::StrCat("--rank=", rank));
    argv_strings.push_back("--rendezvous_dir=" + dir);
    std::vector<char*> argv;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      for (const auto& [p, r] : running) kill(p, SIGKILL);
      return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    }
    if (pid == 0) {
      if (rank != 0) {
        const int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
      }
      execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "rank %d: exec failed: %s\n", rank, std::strerror(errno));
      _exit(127);
    }
    running[pid] = rank;
  }

  std::optional<std::string> failure;
  absl::Time kill_at = absl::InfiniteFuture();
  while (!running.empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0 && running.contains(pid)) {
      const int rank = running[pid];
      running.erase(pid);
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !failure.has_value()) {
        failure = absl::StrCat("rank ", rank, " (pid ", pid, ") ", DescribeExit(status));
        kill_at = absl::Now() + grace;
      }
      continue;
    }
    if (absl::Now() >= kill_at) {
      for (const auto& [p, r] : running) kill(p, SIGKILL);
      kill_at = absl::InfiniteFuture();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fs::remove_all(dir, ec);
  if (failure.has_value()) return absl::UnavailableError(*failure);
  return absl::OkStatus();
}

}  // namespace rackserve::tools
