// Child: a child process for multi-process tests, with its stdout and stderr in log files;
// SIGKILLed and reaped when the Child goes away. Not thread-safe; not copyable.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rackserve::testing {

class Child {
 public:
  // Runs argv[0] (a path) with argv. stdout goes to `log`, stderr too unless `error_log` is set.
  // `env` ("NAME=VALUE" each) is added to the inherited environment, replacing same-named
  // variables.
  Child(const std::vector<std::string>& argv, std::string log, std::string error_log = "",
        const std::vector<std::string>& env = {})
      : log_(std::move(log)), error_log_(error_log.empty() ? log_ : std::move(error_log)) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::vector<char*> envp = Environment(env);
    const int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    const int error_fd =
        error_log_ == log_ ? fd : open(error_log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (error_fd < 0) {
      close(fd);
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      if (dup2(fd, 1) < 0 || dup2(error_fd, 2) < 0) _exit(126);
      execve(args[0], args.data(), envp.data());
      _exit(127);
    }
    close(fd);
    if (error_fd != fd) close(error_fd);
  }
  ~Child() { Kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Whether the process was started and has not been reaped yet (by Kill or WaitExit).
  bool started() const { return pid_ > 0; }

  // Sends `sig` to the process, if started and not reaped yet.
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // Waits up to `timeout` (absl::InfiniteDuration() for no limit) for the process to exit; its
  // exit code, 128 + the signal's number when a signal ended it, or -1 when it did not exit in
  // time (then it is SIGKILLed) or was never started.
  int WaitExit(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (absl::Now() >= deadline) {
        Kill();
        return -1;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }
  std::string Log() const { return Read(log_); }
  std::string ErrorLog() const { return Read(error_log_); }
  // The rest of the log line after `prefix` (e.g. "listening on "), or "" when no such complete
  // line appears within `timeout`.
  std::string WaitForLine(const std::string& prefix,
                          absl::Duration timeout = absl::Seconds(40)) const {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      const std::string log = Log();
      const size_t at = log.find(prefix);
      if (at != std::string::npos && log.find('\n', at) != std::string::npos) {
        const size_t start = at + prefix.size();
        return log.substr(start, log.find('\n', at) - start);
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return "";
  }
  // The HOST:PORT after "listening on " in the log, or "" when not there within `timeout`.
  std::string WaitListening(absl::Duration timeout = absl::Seconds(40)) const {
    return WaitForLine("listening on ", timeout);
  }

 private:
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // The child's environment: this process's, less the variables `env` sets, then `env`. Built
  // before fork(); the pointers stay valid while `env` and environ are unchanged.
  static std::vector<char*> Environment(const std::vector<std::string>& env) {
    std::vector<char*> out;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view var = *e;
      const std::string_view name = var.substr(0, var.find('='));
      bool replaced = false;
      for (const std::string& added : env) {
        if (std::string_view(added).substr(0, added.find('=')) == name) replaced = true;
      }
      if (!replaced) out.push_back(*e);
    }
    for (const std::string& added : env) out.push_back(const_cast<char*>(added.c_str()));
    out.push_back(nullptr);
    return out;
  }

  std::string log_;
  std::string error_log_;
  pid_t pid_ = -1;
};

}  // namespace rackserve::testing
