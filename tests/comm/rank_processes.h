// Test support for multi-process communicator tests: one forked child process per rank on this
// machine, a fresh rendezvous directory, and memory the parent and children share.
//
// A rank's body runs in the child and returns a Status; the child exits 0 when it is OK and
// otherwise prints it (prefixed with the rank) to stderr and exits 1. Children never return
// into GoogleTest: assertions belong in the parent, on exit codes and shared reports.
#pragma once

#include <sys/mman.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/comm/world_spec.h"

namespace rackserve::comm::testing {

// INTERNAL carrying `what` unless `condition` holds (children report, the parent asserts).
inline absl::Status Expect(bool condition, const std::string& what) {
  return condition ? absl::OkStatus() : absl::InternalError(what);
}

// The world of a test group of `size` ranks: layout "tp<size>", model `model`.
WorldSpec TestWorld(int size, const std::string& model);

// A fresh directory under $TEST_TMPDIR (or /tmp), removed with its files on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// `count` default-constructed T in an anonymous shared mapping made before the fork, so the
// children's writes are visible to the parent. T must be trivially copyable (or atomics).
template <typename T>
class SharedArray {
 public:
  explicit SharedArray(size_t count) : count_(count) {
    void* p = ::mmap(nullptr, sizeof(T) * count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
    if (p == MAP_FAILED) std::abort();
    data_ = static_cast<T*>(p);
    for (size_t i = 0; i < count; ++i) new (&data_[i]) T();
  }
  ~SharedArray() { ::munmap(data_, sizeof(T) * count_); }
  SharedArray(const SharedArray&) = delete;
  SharedArray& operator=(const SharedArray&) = delete;
  T& operator[](size_t i) { return data_[i]; }

 private:
  T* data_;
  size_t count_;
};

// The children of one multi-process test; kills and reaps what is left on destruction.
class RankProcesses {
 public:
  // Forks `size` children at once; child r runs body(r).
  RankProcesses(int size, const std::function<absl::Status(int rank)>& body);
  ~RankProcesses();
  RankProcesses(const RankProcesses&) = delete;
  RankProcesses& operator=(const RankProcesses&) = delete;

  // SIGKILLs rank r's process.
  void Kill(int rank);
  // Waits for every child, at most `timeout` in all (then kills the rest). Returns one entry
  // per rank: the exit code, 128 + signal when killed by a signal, -1 when it had to be killed
  // for running past the timeout.
  std::vector<int> Wait(absl::Duration timeout);

 private:
  std::vector<pid_t> pids_;
};

// Nanoseconds on CLOCK_MONOTONIC, comparable across the processes of this machine.
int64_t MonotonicNanos();

}  // namespace rackserve::comm::testing
