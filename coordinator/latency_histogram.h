// LatencyHistogram: one latency's distribution in fixed log-spaced buckets, and RequestLatency: the
// rack's time-to-first-token (TTFT) and time-per-output-token (TPOT) histograms.
//
// Buckets (seconds): upper bounds 1e-4 * 10^(i / 48) for i = 0 .. 326 (about 4.9% apart, 100 us
// to 619 s), then +Inf; bucket i holds the values in (upper_bounds[i - 1], upper_bounds[i]]
// (bucket 0 also everything <= 1e-4, negative values included). Count and sum are exact.
// Quantile(q) finds the bucket that holds the sample of rank q * count and interpolates linearly
// inside it (as Prometheus' histogram_quantile does), clamped to the smallest and largest recorded
// value, so it is within one bucket width of the exact percentile.
//
// LatencyHistogram is a value and not thread-safe; RequestLatency is thread-safe (one mutex) and
// hands out copies.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace rackserve::coordinator {

class LatencyHistogram {
 public:
  // Fine buckets per decade of seconds.
  static constexpr int kBucketsPerDecade = 48;

  LatencyHistogram();

  void Record(double seconds);
  int64_t count() const { return count_; }
  double sum() const { return sum_; }
  // The q-quantile in seconds (q <= 0: the smallest sample, q >= 1: the largest); 0 when empty.
  double Quantile(double q) const;
  // Every bucket's upper bound, ascending; the last is +Inf.
  const std::vector<double>& upper_bounds() const;
  // Samples per bucket (not cumulative), parallel to upper_bounds(); the last is the +Inf bucket.
  const std::vector<int64_t>& counts() const { return counts_; }
  // Samples in the buckets whose upper bound is <= `bound`: exact when `bound` is one of
  // upper_bounds() (the Prometheus `le` count).
  int64_t CumulativeCountAtOrBelow(double bound) const;

 private:
  std::vector<int64_t> counts_;
  int64_t count_ = 0;
  double sum_ = 0;
  double min_ = 0;
  double max_ = 0;
};

class RequestLatency {
 public:
  // One finished request: ttft = arrival to first token, latency = arrival to last token (both
  // seconds). TPOT is recorded only when generated_tokens >= 2: (latency - ttft) /
  // (generated_tokens - 1). A request with no token records nothing.
  void RecordRequest(double ttft_seconds, double latency_seconds, int64_t generated_tokens);
  LatencyHistogram Ttft() const;
  LatencyHistogram Tpot() const;

 private:
  mutable absl::Mutex mutex_;
  LatencyHistogram ttft_ ABSL_GUARDED_BY(mutex_);
  LatencyHistogram tpot_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace rackserve::coordinator
