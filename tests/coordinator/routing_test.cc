// Router policy and admission queue.
#include <string>
#include <vector>

#include "coordinator/admission.h"
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

TEST(AdmissionTest, RetryAfterFollowsTheCompletionRate) {
  EXPECT_EQ(RetryAfter(10, 0), absl::Seconds(1));
  EXPECT_EQ(RetryAfter(10, 20), absl::Milliseconds(500));
  EXPECT_EQ(RetryAfter(1, 1000), absl::Milliseconds(100));
  EXPECT_EQ(RetryAfter(100000, 1), absl::Seconds(30));
  EXPECT_EQ(RetryAfterMillisFromMessage("no hint"), 0);
}

}  // namespace
}  // namespace rackserve::coordinator
