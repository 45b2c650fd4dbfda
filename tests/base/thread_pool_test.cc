#include "runtime/base/thread_pool.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"

namespace rackserve::base {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000, 12345}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, 3, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPoolTest, ManyCallsInARow) {
  ThreadPool pool(4);
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 2000; ++round) {
    pool.ParallelFor(64, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
  }
  EXPECT_EQ(sum.load(), 64 * 2000);
}

TEST(ThreadPoolTest, NestedCallOnSamePoolAborts) {
  EXPECT_DEATH(
      {
        ThreadPool pool(2);
        pool.ParallelFor(
            8, 1, [&](int64_t, int64_t) { pool.ParallelFor(2, 1, [](int64_t, int64_t) {}); });
      },
      "invariant broken");
}

}  // namespace
}  // namespace rackserve::base
