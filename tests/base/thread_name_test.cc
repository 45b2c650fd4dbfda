#include "runtime/base/thread_name.h"

#include <pthread.h>

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace rackserve::base {
namespace {

// The name the kernel keeps for a thread (what top -H and perf show).
std::string NameOf(pthread_t thread) {
  char name[64] = {};
  EXPECT_EQ(pthread_getname_np(thread, name, sizeof(name)), 0);
  return name;
}

TEST(NameThisThreadTest, NamesTheCallingThreadOnly) {
  const std::string before = NameOf(pthread_self());
  std::string named;
  std::thread([&] {
    NameThisThread("link-read");
    named = NameOf(pthread_self());
  }).join();
  EXPECT_EQ(named, "link-read");
  EXPECT_EQ(NameOf(pthread_self()), before);
}

TEST(NameThisThreadTest, CutsLongNamesToFifteenBytes) {
  std::string named;
  std::thread([&] {
    NameThisThread("step replica-0123456789");
    named = NameOf(pthread_self());
  }).join();
  EXPECT_EQ(named, "step replica-01");
}

}  // namespace
}  // namespace rackserve::base
