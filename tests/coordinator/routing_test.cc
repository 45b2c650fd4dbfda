// Router policy, admission queue, and the dispatcher that combines them with the registry.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/admission.h"
#include "coordinator/dispatcher.h"
#include "coordinator/router.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

TEST(RouterTest, PicksLeastOutstandingTokensAmongReplicasWithCredit) {
  LeastOutstandingPolicy policy;
  const std::vector<int32_t> prompt = {1, 2, 3};
  std::vector<RouteCandidate> c = {{"r0", 100, 1000}, {"r1", 40, 1000}, {"r2", 10, 20}};
  EXPECT_EQ(policy.Pick(c, prompt, 50), "r1");  // r2 has the least work but too little credit
  EXPECT_EQ(policy.Pick(c, prompt, 10), "r2");
  EXPECT_EQ(policy.Pick(c, prompt, 5000), std::nullopt);
  EXPECT_EQ(policy.Pick({}, prompt, 1), std::nullopt);
}

TEST(RouterTest, PrefixAffinityBreaksTies) {
  LeastOutstandingPolicy policy;
  std::vector<int32_t> a(100, 7), b(100, 9);
  std::vector<RouteCandidate> c = {{"r0", 0, 1000}, {"r1", 50, 1000}};
  EXPECT_EQ(policy.Pick(c, a, 1), "r0");
  c = {{"r0", 50, 1000}, {"r1", 50, 1000}};
  EXPECT_EQ(policy.Pick(c, b, 1), "r0");  // no history: first in order
  c = {{"r0", 50, 1000}, {"r1", 0, 1000}};
  EXPECT_EQ(policy.Pick(c, b, 1), "r1");  // b last used r1
  c = {{"r0", 30, 1000}, {"r1", 30, 1000}};
  EXPECT_EQ(policy.Pick(c, b, 1), "r1");
  // Only the first 64 tokens count: a differs from a' after token 64 and still prefers r0.
  std::vector<int32_t> a2 = a;
  a2[80] = 1;
  c = {{"r1", 5, 1000}, {"r0", 5, 1000}};
  EXPECT_EQ(policy.Pick(c, a2, 1), "r0");
  // Less work always wins over affinity.
  c = {{"r0", 6, 1000}, {"r1", 5, 1000}};
  EXPECT_EQ(policy.Pick(c, a, 1), "r1");
}

TEST(AdmissionTest, BoundedQueueRejectsWithRetryAfter) {
  AdmissionQueue queue(2);
  auto t1 = queue.Enqueue(absl::Seconds(1));
  auto t2 = queue.Enqueue(absl::Seconds(1));
  ASSERT_TRUE(t1.ok() && t2.ok());
  EXPECT_TRUE(queue.IsHead(*t1));
  EXPECT_FALSE(queue.IsHead(*t2));
  auto t3 = queue.Enqueue(absl::Milliseconds(250));
  EXPECT_EQ(t3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(t3.status().message()), HasSubstr("admission queue full (2"));
  EXPECT_EQ(RetryAfterMillisFromMessage(std::string(t3.status().message())), 250);
  queue.Remove(*t1);
  EXPECT_TRUE(queue.IsHead(*t2));
  EXPECT_TRUE(queue.Enqueue(absl::Seconds(1)).ok());
  EXPECT_EQ(queue.size(), 2);
}

TEST(AdmissionTest, LimitZeroRefusesEveryWaiter) {
  AdmissionQueue queue(0);
  auto t = queue.Enqueue(absl::Milliseconds(300));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("admission queue is off (limit 0)"));
  EXPECT_EQ(RetryAfterMillisFromMessage(std::string(t.status().message())), 300);
}

// Two VMs of one device each: r0 on vm0, r1 on vm1.
class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest()
      : topology_(
            *Topology::Parse("model: /m\nvms: [{name: vm0, devices: 1}, {name: vm1, devices: 1}]\n"
                             "layout: {tp: 1, pp: 1}\n",
                             "rack.yaml")),
        registry_(&topology_, &clock_, absl::Seconds(3)) {}

  std::string Join(const std::string& vm, int64_t credit) {
    auto id = registry_.Register({kProtocolVersion, vm, vm + ":1", 1, "/m", 0});
    EXPECT_TRUE(id.ok()) << id.status();
    Report(*id, vm == "vm0" ? "r0" : "r1", credit);
    return *id;
  }
  void Report(const std::string& worker_id, const std::string& replica, int64_t credit,
              int64_t reserved = 0) {
    ReplicaReport report;
    report.replica_id = replica;
    report.free_token_credit = credit;
    report.reserved_tokens = reserved;
    ASSERT_TRUE(registry_.Heartbeat(worker_id, {report}).ok());
  }

  static bool Never() { return false; }
  static double NoRate() { return 0; }
  const std::vector<int32_t> prompt_ = {1, 2, 3};
  FakeClock clock_;
  Topology topology_;
  Registry registry_;
};

TEST_F(DispatcherTest, PlacesAtOnceAndTheLeaseNamesItsWorkers) {
  const std::string w0 = Join("vm0", 100);
  Dispatcher dispatcher(&registry_, std::make_unique<LeastOutstandingPolicy>(), /*queue_limit=*/0);
  auto lease = dispatcher.Acquire(prompt_, 60, Never, absl::Seconds(1), NoRate);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->replica_id, "r0");
  EXPECT_EQ(lease->address, "vm0:1");
  EXPECT_EQ(lease->leader_worker_id, w0);
  EXPECT_EQ(lease->worker_ids, std::vector<std::string>{w0});
  EXPECT_EQ(dispatcher.outstanding_tokens("r0"), 60);
  // 40 tokens of credit left: with no queue, a request of 60 is refused at once.
  auto refused = dispatcher.Acquire(prompt_, 60, Never, absl::Seconds(1), NoRate);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("retry after"));
  EXPECT_EQ(dispatcher.queued(), 0);
  // A heartbeat that still counts the first request in its reservations frees nothing (the
  // dispatcher does not admit it twice)...
  Report(w0, "r0", 40, /*reserved=*/60);
  dispatcher.OnCreditReport("r0");
  EXPECT_EQ(dispatcher.Acquire(prompt_, 60, Never, absl::Seconds(1), NoRate).status().code(),
            absl::StatusCode::kResourceExhausted);
  // ...its release does, at once.
  dispatcher.Release(*lease, 60);
  auto second = dispatcher.Acquire(prompt_, 60, Never, absl::Seconds(1), NoRate);
  EXPECT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(dispatcher.outstanding_tokens("r0"), 60);
  // A replica that refused a request gets none until its next report.
  dispatcher.Release(*second, 60);
  dispatcher.OnRefused("r0");
  EXPECT_EQ(dispatcher.Acquire(prompt_, 10, Never, absl::Seconds(1), NoRate).status().code(),
            absl::StatusCode::kResourceExhausted);
  dispatcher.OnCreditReport("r0");
  EXPECT_TRUE(dispatcher.Acquire(prompt_, 10, Never, absl::Seconds(1), NoRate).ok());
}

TEST_F(DispatcherTest, PinnedRequestGoesToItsReplicaOnlyAndNeverToADeadOne) {
  Join("vm0", 1000);
  Join("vm1", 100);
  Dispatcher dispatcher(&registry_, std::make_unique<LeastOutstandingPolicy>(), /*queue_limit=*/8);
  // The router would pick r0 (more credit); the pin overrides it.
  auto lease = dispatcher.Acquire(prompt_, 10, Never, absl::Seconds(1), NoRate, "r1");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->replica_id, "r1");
  registry_.MarkDead(*registry_.WorkerOf("vm1"));
  auto refused = dispatcher.Acquire(prompt_, 10, Never, absl::Seconds(5), NoRate, "r1");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("replica r1 is not live"));
}

TEST_F(DispatcherTest, WaitingRequestsAreServedInArrivalOrder) {
  const std::string w0 = Join("vm0", 0);
  Dispatcher dispatcher(&registry_, std::make_unique<LeastOutstandingPolicy>(), /*queue_limit=*/4);
  std::atomic<int> order{0};
  int first_place = -1, second_place = -1;
  absl::StatusOr<Lease> first_lease;
  std::thread first([&] {
    first_lease = dispatcher.Acquire(prompt_, 10, Never, absl::Seconds(10), NoRate);
    EXPECT_TRUE(first_lease.ok()) << first_lease.status();
    first_place = order++;
  });
  while (dispatcher.queued() < 1) absl::SleepFor(absl::Milliseconds(1));
  std::thread second([&] {
    auto lease = dispatcher.Acquire(prompt_, 5, Never, absl::Seconds(10), NoRate);
    EXPECT_TRUE(lease.ok()) << lease.status();
    second_place = order++;
  });
  while (dispatcher.queued() < 2) absl::SleepFor(absl::Milliseconds(1));
  // Credit for 10: enough for either; the head (first) takes it, the second keeps waiting.
  Report(w0, "r0", 10);
  dispatcher.OnCreditReport("r0");
  first.join();
  absl::SleepFor(absl::Milliseconds(120));
  EXPECT_EQ(dispatcher.queued(), 1);
  ASSERT_TRUE(first_lease.ok());
  dispatcher.Release(*first_lease, 10);  // the first ended: its credit goes to the second
  second.join();
  EXPECT_EQ(first_place, 0);
  EXPECT_EQ(second_place, 1);
  EXPECT_EQ(dispatcher.queued(), 0);
}

TEST_F(DispatcherTest, CancelledWaiterLeavesTheQueue) {
  Join("vm0", 0);
  Dispatcher dispatcher(&registry_, std::make_unique<LeastOutstandingPolicy>(), /*queue_limit=*/4);
  std::atomic<bool> cancelled{false};
  absl::Status status;
  std::thread waiter([&] {
    status = dispatcher
                 .Acquire(
                     prompt_, 10, [&] { return cancelled.load(); }, absl::Seconds(10), NoRate)
                 .status();
  });
  while (dispatcher.queued() < 1) absl::SleepFor(absl::Milliseconds(1));
  const absl::Time start = absl::Now();
  cancelled = true;
  dispatcher.Wake();
  waiter.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(dispatcher.queued(), 0);
}

TEST(AdmissionTest, RetryAfterFollowsTheCompletionRate) {
  EXPECT_EQ(RetryAfter(10, 0), absl::Seconds(1));
  EXPECT_EQ(RetryAfter(10, 20), absl::Milliseconds(500));
  EXPECT_EQ(RetryAfter(1, 1000), absl::Milliseconds(100));
  EXPECT_EQ(RetryAfter(100000, 1), absl::Seconds(30));
  EXPECT_EQ(RetryAfterMillisFromMessage("no hint"), 0);
}

}  // namespace
}  // namespace rackserve::coordinator
