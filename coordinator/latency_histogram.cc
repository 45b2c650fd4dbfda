#include "coordinator/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace rackserve::coordinator {
namespace {

constexpr double kSmallestBound = 1e-4;  // seconds
constexpr double kLargestLatency = 600;  // seconds: the last finite bound is the first above it

std::vector<double> MakeUpperBounds() {
  std::vector<double> bounds;
  for (int i = 0;; ++i) {
    bounds.push_back(kSmallestBound *
                     std::pow(10.0, static_cast<double>(i) / LatencyHistogram::kBucketsPerDecade));
    if (bounds.back() >= kLargestLatency) break;
  }
  bounds.push_back(std::numeric_limits<double>::infinity());
  return bounds;
}

}  // namespace

const std::vector<double>& LatencyHistogram::upper_bounds() const {
  static const std::vector<double>* const bounds = new std::vector<double>(MakeUpperBounds());
  return *bounds;
}

LatencyHistogram::LatencyHistogram() : counts_(upper_bounds().size(), 0) {}

void LatencyHistogram::Record(double seconds) {
  if (std::isnan(seconds)) return;
  const std::vector<double>& bounds = upper_bounds();
  // The first bucket whose upper bound is >= seconds (the last, +Inf, always is).
  const size_t bucket = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  ++counts_[bucket];
  min_ = count_ == 0 ? seconds : std::min(min_, seconds);
  max_ = count_ == 0 ? seconds : std::max(max_, seconds);
  ++count_;
  sum_ += seconds;
}

double LatencyHistogram::Quantile(double q) const {
  if (count_ == 0) return 0;
  if (q <= 0) return min_;
  if (q >= 1) return max_;
  const double rank = std::max(q * static_cast<double>(count_), 1.0);
  const std::vector<double>& bounds = upper_bounds();
  double below = 0;  // samples in the buckets before `bucket`
  size_t bucket = 0;
  while (below + static_cast<double>(counts_[bucket]) < rank) {
    below += static_cast<double>(counts_[bucket]);
    ++bucket;
  }
  const double lower = bucket == 0 ? 0.0 : bounds[bucket - 1];
  const double upper = std::isinf(bounds[bucket]) ? max_ : bounds[bucket];
  const double fraction = (rank - below) / static_cast<double>(counts_[bucket]);
  return std::clamp(lower + (upper - lower) * fraction, min_, max_);
}

int64_t LatencyHistogram::CumulativeCountAtOrBelow(double bound) const {
  const std::vector<double>& bounds = upper_bounds();
  int64_t total = 0;
  for (size_t i = 0; i < bounds.size() && bounds[i] <= bound; ++i) total += counts_[i];
  return total;
}

void RequestLatency::RecordRequest(double ttft_seconds, double latency_seconds,
                                   int64_t generated_tokens) {
  if (generated_tokens < 1) return;
  absl::MutexLock lock(&mutex_);
  ttft_.Record(ttft_seconds);
  if (generated_tokens >= 2) {
    tpot_.Record((latency_seconds - ttft_seconds) / static_cast<double>(generated_tokens - 1));
  }
}

LatencyHistogram RequestLatency::Ttft() const {
  absl::MutexLock lock(&mutex_);
  return ttft_;
}

LatencyHistogram RequestLatency::Tpot() const {
  absl::MutexLock lock(&mutex_);
  return tpot_;
}

}  // namespace rackserve::coordinator
