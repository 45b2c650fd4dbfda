// ProcessWatch on a real child process: alive, then exited once killed (before being reaped).
#include "runtime/comm/internal/process_watch.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace rackserve::comm::internal {
namespace {

TEST(ProcessWatchTest, SeesAChildExit) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    for (;;) ::pause();
  }
  absl::StatusOr<ProcessWatch> watch = ProcessWatch::Open(child);
  ASSERT_TRUE(watch.ok()) << watch.status();
  EXPECT_EQ(watch->pid(), child);
  EXPECT_FALSE(watch->Exited());
  ::kill(child, SIGKILL);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!watch->Exited() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(watch->Exited());  // a zombie counts as exited
  ProcessWatch moved = *std::move(watch);
  EXPECT_TRUE(moved.Exited());
  ::waitpid(child, nullptr, 0);
}

TEST(ProcessWatchTest, MissingProcessIsNotFound) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // reaped: the pid is free
  EXPECT_EQ(ProcessWatch::Open(child).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ProcessWatch::Open(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProcessWatchTest, LocalNamespaceIsStable) {
  const std::string ns = LocalProcessNamespace();
  EXPECT_FALSE(ns.empty());
  EXPECT_EQ(ns, LocalProcessNamespace());
}

}  // namespace
}  // namespace rackserve::comm::internal
