#include "runtime/base/thread_name.h"

#include <pthread.h>

#include <string>
#include <string_view>
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

// The name a new thread has once it called NameThisThread(name).
std::string NamedOnANewThread(std::string_view name) {
  std::string named;
  std::thread([&] {
    NameThisThread(name);
    named = NameOf(pthread_self());
  }).join();
  return named;
}

TEST(NameThisThreadTest, NamesTheCallingThreadOnly) {
  const std::string before = NameOf(pthread_self());
  EXPECT_EQ(NamedOnANewThread("link-read"), "link-read");
  EXPECT_EQ(NameOf(pthread_self()), before);
}

TEST(NameThisThreadTest, CutsLongNamesToFifteenBytes) {
  EXPECT_EQ(NamedOnANewThread("step replica-0123456789"), "step replica-01");
}

}  // namespace
}  // namespace rackserve::base
