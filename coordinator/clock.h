// Clock: the coordinator's one source of time, behind an interface so that heartbeat deadlines,
// admission and throughput windows are tested with a FakeClock (no sleeps in unit tests).
//
// RealClock() is a process-wide singleton. Both clocks are thread-safe.
#pragma once

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rackserve::coordinator {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// absl::Now().
Clock& RealClock();

// Time that moves only when Advance() is called. Starts at the Unix epoch + 1000 s.
class FakeClock : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mutex_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mutex_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mutex_;
  absl::Time now_ ABSL_GUARDED_BY(mutex_) = absl::UnixEpoch() + absl::Seconds(1000);
};

}  // namespace rackserve::coordinator
