// LatencyHistogram against exact percentiles of random samples (tolerance: one bucket width), its
// bucket layout and cumulative counts, and RequestLatency's TTFT / TPOT rules.
#include "coordinator/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {

// Nearest-rank percentile of sorted samples: the value of rank ceil(q * n).
double ExactQuantile(const std::vector<double>& sorted, double q) {
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

TEST(LatencyHistogramTest, BoundsAreLogSpacedFrom100UsPast600S) {
  const LatencyHistogram histogram;
  const std::vector<double>& bounds = histogram.upper_bounds();
  ASSERT_GE(bounds.size(), 300u);
  EXPECT_DOUBLE_EQ(bounds.front(), 1e-4);
  EXPECT_TRUE(std::isinf(bounds.back()));
  EXPECT_GE(bounds[bounds.size() - 2], 600.0);
  EXPECT_LT(bounds[bounds.size() - 3], 600.0);
  for (size_t i = 1; i + 1 < bounds.size(); ++i) {
    EXPECT_NEAR(bounds[i] / bounds[i - 1], std::pow(10.0, 1.0 / 48), 1e-9) << i;
  }
  EXPECT_EQ(histogram.counts().size(), bounds.size());
}

TEST(LatencyHistogramTest, EmptyIsZero) {
  const LatencyHistogram histogram;
  EXPECT_EQ(histogram.count(), 0);
  EXPECT_EQ(histogram.sum(), 0);
  EXPECT_EQ(histogram.Quantile(0.5), 0);
  EXPECT_EQ(histogram.Quantile(0.99), 0);
}

TEST(LatencyHistogramTest, QuantilesWithinOneBucketOfExactPercentiles) {
  std::mt19937_64 rng(std::random_device{}());
  const double ratio = std::pow(10.0, 1.0 / LatencyHistogram::kBucketsPerDecade);
  // Log-normal latencies around 50 ms, and a uniform spread over three decades.
  std::lognormal_distribution<double> lognormal(std::log(0.05), 1.0);
  std::uniform_real_distribution<double> exponent(-3.0, 0.0);
  for (int trial = 0; trial < 2; ++trial) {
    for (int n : {1, 7, 1000, 20000}) {
      LatencyHistogram histogram;
      std::vector<double> samples;
      double sum = 0;
      for (int i = 0; i < n; ++i) {
        const double s = trial == 0 ? lognormal(rng) : std::pow(10.0, exponent(rng));
        samples.push_back(s);
        histogram.Record(s);
        sum += s;
      }
      std::sort(samples.begin(), samples.end());
      EXPECT_EQ(histogram.count(), n);
      EXPECT_NEAR(histogram.sum(), sum, 1e-9 * sum);
      for (double q : {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0}) {
        const double exact = ExactQuantile(samples, q);
        // The estimate lies in the exact sample's bucket: (exact / ratio, exact * ratio).
        const double width = exact * (ratio - 1);
        EXPECT_NEAR(histogram.Quantile(q), exact, width)
            << "trial " << trial << " n " << n << " q " << q;
      }
    }
  }
}

TEST(LatencyHistogramTest, ExtremesLandInFirstAndInfBuckets) {
  LatencyHistogram histogram;
  histogram.Record(1e-7);
  histogram.Record(-1);
  histogram.Record(5000);
  EXPECT_EQ(histogram.counts().front(), 2);
  EXPECT_EQ(histogram.counts().back(), 1);
  EXPECT_EQ(histogram.Quantile(1.0), 5000);  // the +Inf bucket answers the largest sample
  EXPECT_EQ(histogram.Quantile(0.0), -1);
}

TEST(LatencyHistogramTest, CumulativeCountIsExactAtBounds) {
  LatencyHistogram histogram;
  const std::vector<double>& bounds = histogram.upper_bounds();
  histogram.Record(bounds[10]);         // on a bound: counted at that bound
  histogram.Record(bounds[10] * 1.01);  // just above it
  histogram.Record(bounds[20]);
  EXPECT_EQ(histogram.CumulativeCountAtOrBelow(bounds[9]), 0);
  EXPECT_EQ(histogram.CumulativeCountAtOrBelow(bounds[10]), 1);
  EXPECT_EQ(histogram.CumulativeCountAtOrBelow(bounds[11]), 2);
  EXPECT_EQ(histogram.CumulativeCountAtOrBelow(bounds[20]), 3);
  EXPECT_EQ(histogram.CumulativeCountAtOrBelow(bounds.back()), 3);
}

TEST(RequestLatencyTest, RecordsTtftAndTpotByTheRules) {
  RequestLatency latency;
  latency.RecordRequest(0.2, 1.2, 11);  // TPOT (1.2 - 0.2) / 10 = 0.1
  latency.RecordRequest(0.3, 0.3, 1);   // one token: TTFT only
  latency.RecordRequest(0.5, 0.5, 0);   // no token: nothing
  const LatencyHistogram ttft = latency.Ttft();
  const LatencyHistogram tpot = latency.Tpot();
  EXPECT_EQ(ttft.count(), 2);
  EXPECT_NEAR(ttft.sum(), 0.5, 1e-12);
  ASSERT_EQ(tpot.count(), 1);
  EXPECT_NEAR(tpot.sum(), 0.1, 1e-12);
  EXPECT_NEAR(tpot.Quantile(0.5), 0.1, 1e-12);
}

}  // namespace
}  // namespace rackserve::coordinator
