// Throughput windows, the worker-count audit, batch jobs, and failover de-duplication.
#include "coordinator/throughput.h"

#include <random>
#include <vector>

#include "coordinator/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {


TEST(RateWindowTest, RatesOverSlidingWindows) {
  FakeClock clock;
  RateWindow w;
  for (int i = 0; i < 60; ++i) {  // 100 tokens every second for a minute
    w.Add(clock.Now(), 100);
    clock.Advance(absl::Seconds(1));
  }
  clock.Advance(absl::Milliseconds(-500));  // now is mid-way through the last second
  EXPECT_DOUBLE_EQ(w.Rate(clock.Now(), absl::Seconds(1)), 100);
  EXPECT_DOUBLE_EQ(w.Rate(clock.Now(), absl::Seconds(10)), 100);
  EXPECT_NEAR(w.Rate(clock.Now(), absl::Seconds(60)), 100, 1e-9);
  clock.Advance(absl::Seconds(5));  // 5 s idle
  EXPECT_DOUBLE_EQ(w.Rate(clock.Now(), absl::Seconds(1)), 0);
  EXPECT_DOUBLE_EQ(w.Rate(clock.Now(), absl::Seconds(10)), 50);
  clock.Advance(absl::Seconds(120));  // all buckets stale
  EXPECT_DOUBLE_EQ(w.Rate(clock.Now(), absl::Seconds(60)), 0);
  EXPECT_DOUBLE_EQ(w.total(), 6000);
}

TEST(RackThroughputTest, ScopesAndAuditAddUp) {
  FakeClock clock;
  RackThroughput t({{"r0", "vm0", {"vm0/0"}}, {"r1", "vm1", {"vm1/0", "vm1/1"}}});
  std::mt19937 rng(7);
  int64_t delivered = 0, w0 = 0, w1 = 0;
  for (int step = 0; step < 50; ++step) {
    const int64_t a = rng() % 40, b = rng() % 40;
    t.RecordDelivered(clock.Now(), a + b);
    delivered += a + b;
    w0 += a;
    w1 += b;
    if (step % 5 == 4) {  // workers report cumulative counters every 5 steps
      t.ReportCounters(clock.Now(), "vm0#0", "r0", w0, 10 * step);
      t.ReportCounters(clock.Now(), "vm1#1", "r1", w1, 20 * step);
    }
    clock.Advance(absl::Milliseconds(200));
  }
  ThroughputSnapshot s = t.Snapshot(clock.Now());
  EXPECT_EQ(s.audit.delivered, delivered);
  EXPECT_EQ(s.audit.reported, delivered);  // caught up: the audit holds exactly
  ASSERT_EQ(s.replicas.size(), 2u);
  EXPECT_DOUBLE_EQ(s.replicas[0].generated_total, static_cast<double>(w0));
  EXPECT_DOUBLE_EQ(s.replicas[1].prompt_total, 20.0 * 49);
  ASSERT_EQ(s.devices.size(), 3u);
  EXPECT_EQ(s.devices[1].name, "vm1/0");
  EXPECT_DOUBLE_EQ(s.devices[1].generated_total + s.devices[2].generated_total,
                   static_cast<double>(w1));
  EXPECT_EQ(s.vms[1].name, "vm1");
  ASSERT_EQ(s.rack.windows.size(), 3u);
  EXPECT_NEAR(
      s.rack.windows[1].generated_per_second * 10,
      s.vms[0].windows[1].generated_per_second * 10 + s.vms[1].windows[1].generated_per_second * 10,
      200);  // unreported tail of at most 4 steps per worker

  // Not yet caught up: the audit lags until the next report; a restarted worker starts over.
  t.RecordDelivered(clock.Now(), 7);
  EXPECT_EQ(t.Snapshot(clock.Now()).audit.reported, delivered);
  t.ReportCounters(clock.Now(), "vm0#2", "r0", 7, 0);
  s = t.Snapshot(clock.Now());
  EXPECT_EQ(s.audit.reported, s.audit.delivered);
}

TEST(RackThroughputTest, AuditWithoutFailuresIsExactOnceReportsCatchUp) {
  FakeClock clock;
  RackThroughput t({{"r0", "vm0", {"vm0/0"}}, {"r1", "vm1", {"vm1/0"}}});
  std::mt19937 rng(11);
  int64_t w0 = 0, w1 = 0;
  for (int step = 0; step < 20; ++step) {
    const int64_t a = rng() % 30, b = rng() % 30;
    t.RecordReceived("vm0#0", a);
    t.RecordReceived("vm1#1", b);
    t.RecordDelivered(clock.Now(), a + b);
    w0 += a;
    w1 += b;
    clock.Advance(absl::Milliseconds(100));
  }
  AuditFigures a = t.Snapshot(clock.Now()).audit;
  EXPECT_EQ(a.unreported, w0 + w1);  // nothing reported yet
  EXPECT_TRUE(a.exact);
  t.ReportCounters(clock.Now(), "vm0#0", "r0", w0, 0);
  t.ReportCounters(clock.Now(), "vm1#1", "r1", w1, 0);
  a = t.Snapshot(clock.Now()).audit;
  EXPECT_EQ(a.delivered, w0 + w1);
  EXPECT_EQ(a.received, w0 + w1);
  EXPECT_EQ(a.reported, w0 + w1);
  EXPECT_EQ(a.discarded, 0);
  EXPECT_EQ(a.unreported, 0);
  EXPECT_TRUE(a.exact);
}

TEST(RackThroughputTest, AuditAcrossAFailoverCountsDiscardedAndUnreportedTokens) {
  FakeClock clock;
  RackThroughput t({{"r0", "vm0", {"vm0/0"}}, {"r1", "vm1", {"vm1/0"}}});
  // vm0 sends 10 tokens, reports 6, dies; vm1 resumes, resending 2, and sends 8 more.
  t.RecordReceived("vm0#0", 10);
  t.RecordDelivered(clock.Now(), 10);
  t.ReportCounters(clock.Now(), "vm0#0", "r0", 6, 4);
  t.RecordReceived("vm1#1", 10);
  t.RecordDiscarded(2);
  t.RecordDelivered(clock.Now(), 8);
  t.ReportCounters(clock.Now(), "vm1#1", "r1", 10, 4);
  AuditFigures a = t.Snapshot(clock.Now()).audit;
  EXPECT_EQ(a.delivered, 18);
  EXPECT_EQ(a.received, 20);
  EXPECT_EQ(a.discarded, 2);
  EXPECT_EQ(a.reported, 16);
  EXPECT_EQ(a.unreported, 4);
  EXPECT_TRUE(a.exact);
  // Retiring the dead worker keeps its figures; its late counters are ignored and a late
  // receipt counts as unreported.
  t.RetireSource("vm0#0");
  EXPECT_EQ(t.Snapshot(clock.Now()).audit.unreported, 4);
  t.ReportCounters(clock.Now(), "vm0#0", "r0", 10, 4);
  t.RecordReceived("vm0#0", 1);
  t.RecordDiscarded(1);
  a = t.Snapshot(clock.Now()).audit;
  EXPECT_EQ(a.reported, 16);
  EXPECT_EQ(a.received, 21);
  EXPECT_EQ(a.unreported, 5);
  EXPECT_TRUE(a.exact);
  // A worker that counted tokens the coordinator never received breaks the equation.
  t.ReportCounters(clock.Now(), "vm1#1", "r1", 13, 4);
  a = t.Snapshot(clock.Now()).audit;
  EXPECT_EQ(a.unreported, 5);  // clamped at 0 for vm1
  EXPECT_FALSE(a.exact);
}

TEST(BatchJobMeterTest, MlperfOfflineDefinition) {
  FakeClock clock;
  BatchJobMeter m;
  EXPECT_EQ(m.TokensPerSecond(), 0);
  m.Issued(clock.Now());
  clock.Advance(absl::Seconds(1));
  m.Issued(clock.Now());  // later issues do not move the start
  m.Completed(clock.Now(), 300);
  clock.Advance(absl::Seconds(3));
  m.Completed(clock.Now(), 500);
  EXPECT_DOUBLE_EQ(m.TokensPerSecond(), 800.0 / 4);
  EXPECT_EQ(m.generated_tokens(), 800);
}

}  // namespace
}  // namespace rackserve::coordinator
