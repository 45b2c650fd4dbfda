// Throughput accounting of the rack: tokens per second over sliding windows, rack-wide from the
// coordinator's own count of tokens delivered to clients, and per VM / device / replica from the
// workers' cumulative counters (their deltas). The audit's reported figure (sum of every delta
// the workers reported) must equal its delivered figure once the workers' reports have caught up
// and no token was received twice. Per batch job, BatchJobMeter follows the MLPerf offline
// definition.
//
// The audit (AuditFigures) explains any difference: the coordinator counts, per worker ("source"),
// the generated tokens it received from it, and how many of all received tokens it discarded
// (resent across a failover, or arriving after the client had gone). A worker that died before
// its heartbeats counted what it sent leaves "unreported" tokens: received - reported, per worker,
// clamped at 0. The figure is exact when delivered == received - discarded and received ==
// reported + unreported. A retired source (its worker was forgotten) keeps its figures in the
// totals and stops taking counters.
//
// All times come from the caller (a Clock), so windows are tested with a fake clock.
// RateWindow and BatchJobMeter are not thread-safe; RackThroughput is (one internal mutex).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace rackserve::coordinator {

// The windows every figure is reported over.
inline constexpr std::array<int, 3> kWindowSeconds = {1, 10, 60};

// Counts in 100 ms buckets over the last 60 s; Rate(now, w) = count in (now - w, now] / w.
class RateWindow {
 public:
  void Add(absl::Time at, double count);
  double Rate(absl::Time now, absl::Duration window) const;
  double total() const { return total_; }

 private:
  static constexpr int kBuckets = 600;  // 60 s of 100 ms
  static int64_t BucketOf(absl::Time t);
  std::array<double, kBuckets> counts_{};
  std::array<int64_t, kBuckets> bucket_ids_{};  // absolute bucket index held in each slot
  double total_ = 0;
};

struct WindowRates {
  double window_seconds = 0;
  double generated_per_second = 0;
  double prompt_per_second = 0;
};

struct ScopeThroughput {
  std::string name;                  // "vm0", "vm0/2", "r0"; "" for the rack
  std::vector<WindowRates> windows;  // one per kWindowSeconds
  double generated_total = 0;
  double prompt_total = 0;
};

struct AuditFigures {
  int64_t delivered = 0;   // generated tokens delivered to clients
  int64_t reported = 0;    // sum of the workers' reported counters (deltas)
  int64_t received = 0;    // generated tokens received from workers
  int64_t discarded = 0;   // received, not delivered
  int64_t unreported = 0;  // received, never (or not yet) reported: sum of max(0, recv - rep)
  bool exact = false;      // delivered == received - discarded && received == reported + unrep.
};

struct ThroughputSnapshot {
  ScopeThroughput rack;  // coordinator's own count of delivered tokens
  std::vector<ScopeThroughput> vms, devices, replicas;  // sorted by name
  AuditFigures audit;  // its delivered and reported are the two totals the audit compares
};

// Where a replica's tokens are attributed: its leader's VM; each of its devices gets an equal
// share (a TP/PP replica's tokens are produced by all of its devices together).
struct ReplicaPlacement {
  std::string replica_id;
  std::string leader_vm;
  std::vector<std::string> devices;  // "vm/device"
};

class RackThroughput {
 public:
  explicit RackThroughput(std::vector<ReplicaPlacement> placements);

  // Tokens the coordinator delivered to clients (after de-duplication).
  void RecordDelivered(absl::Time at, int64_t generated_tokens);
  // Generated tokens the coordinator received from worker `source` (before de-duplication).
  void RecordReceived(const std::string& source, int64_t generated_tokens);
  // Received tokens that were not delivered (duplicates, or the client had gone).
  void RecordDiscarded(int64_t generated_tokens);
  // The worker `source` is gone for good: its figures stay in the totals and its state is
  // dropped. Counters it reports later are ignored; tokens received from it later count as
  // unreported.
  void RetireSource(const std::string& source);
  // Prompt tokens of a request that completed.
  void RecordPrompt(absl::Time at, int64_t prompt_tokens);
  // A worker's cumulative counters for one replica. `source` identifies the counting process (the
  // worker id): a new source starts from zero, a counter that went down restarts from zero.
  void ReportCounters(absl::Time at, const std::string& source, const std::string& replica_id,
                      int64_t generated_total, int64_t prompt_total);

  ThroughputSnapshot Snapshot(absl::Time now) const;

 private:
  struct Meter {
    RateWindow generated, prompt;
  };
  // What one worker process sent and reported.
  struct Source {
    std::map<std::string, std::pair<int64_t, int64_t>> last;  // replica -> {generated, prompt}
    int64_t reported = 0;                                     // generated tokens, sum of deltas
    int64_t received = 0;
  };
  static constexpr size_t kRememberRetired = 1024;  // retired source ids kept to ignore late calls
  static ScopeThroughput Describe(const std::string& name, const Meter& meter, absl::Time now);
  bool RetiredLocked(const std::string& source) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, ReplicaPlacement> placements_;  // immutable
  Meter rack_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, Meter> vms_ ABSL_GUARDED_BY(mutex_), devices_ ABSL_GUARDED_BY(mutex_),
      replicas_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, Source> sources_ ABSL_GUARDED_BY(mutex_);
  // The latest kRememberRetired retired sources, oldest first, and the same as a set.
  std::deque<std::string> retired_order_ ABSL_GUARDED_BY(mutex_);
  std::set<std::string> retired_ ABSL_GUARDED_BY(mutex_);
  int64_t delivered_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t worker_generated_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t discarded_ ABSL_GUARDED_BY(mutex_) = 0;
  // Figures of retired sources: received, and received - reported clamped at 0.
  int64_t retired_received_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t retired_unreported_ ABSL_GUARDED_BY(mutex_) = 0;
};

// MLPerf offline throughput of one batch job: generated tokens / (last completion - first issue).
class BatchJobMeter {
 public:
  void Issued(absl::Time at);
  void Completed(absl::Time at, int64_t generated_tokens);
  // 0 until one request has completed after the first issue.
  double TokensPerSecond() const;
  int64_t generated_tokens() const { return generated_; }

 private:
  bool issued_ = false;
  absl::Time first_issue_;
  absl::Time last_completion_;
  int64_t generated_ = 0;
};

}  // namespace rackserve::coordinator
