#include "coordinator/registry.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

Topology TwoVms() {
  auto t = Topology::Parse(
      "model: /m\nvms: [{name: vm0, devices: 2}, {name: vm1, devices: 2}]\n"
      "layout: {tp: 1, pp: 1}\n",
      "rack.yaml");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

WorkerInfo Info(std::string vm) {
  return {kProtocolVersion, std::move(vm), "127.0.0.1:1", 2, "/m", 0};
}

TEST(RegistryTest, MismatchedViewIsRefusedNamingWhatDiffers) {
  const Topology topology = TwoVms();
  FakeClock clock;
  Registry registry(&topology, &clock, absl::Seconds(3));
  struct Case {
    WorkerInfo info;
    std::string expected;
  };
  WorkerInfo version = Info("vm0"), vm = Info("vm7"), devices = Info("vm0"), model = Info("vm0");
  version.protocol_version = 99;
  devices.device_count = 3;
  model.model = "/other";
  for (const Case& c : {Case{version, "protocol_version"}, Case{vm, "vm: \"vm7\""},
                        Case{devices, "devices: VM \"vm0\" offers 3"}, Case{model, "model:"}}) {
    auto id = registry.Register(c.info);
    EXPECT_EQ(id.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(id.status().message()), HasSubstr(c.expected));
  }
  ASSERT_TRUE(registry.Register(Info("vm0")).ok());
  EXPECT_EQ(registry.Register(Info("vm0")).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST(RegistryTest, SilentWorkerDiesAfterTimeoutAndItsReplicasGoDown) {
  const Topology topology = TwoVms();
  FakeClock clock;
  Registry registry(&topology, &clock, absl::Seconds(3));
  auto w0 = registry.Register(Info("vm0"));
  auto w1 = registry.Register(Info("vm1"));
  ASSERT_TRUE(w0.ok() && w1.ok());
  ASSERT_TRUE(registry.Heartbeat(*w0, {{"r0", 0, 0, 500}}).ok());
  clock.Advance(absl::Seconds(2));
  ASSERT_TRUE(registry.Heartbeat(*w0, {}).ok());
  EXPECT_TRUE(registry.ExpireDead().empty());
  clock.Advance(absl::Milliseconds(1500));  // vm1 silent 3.5 s, vm0 1.5 s
  EXPECT_EQ(registry.ExpireDead(), std::vector<std::string>{*w1});
  const auto replicas = registry.Replicas();
  ASSERT_EQ(replicas.size(), 4u);
  EXPECT_TRUE(replicas[0].live);
  EXPECT_EQ(replicas[0].free_token_credit, 500);
  EXPECT_FALSE(replicas[2].live);
  auto hb = registry.Heartbeat(*w1, {});
  EXPECT_EQ(hb.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(hb.message()), HasSubstr(*w1));
  EXPECT_EQ(registry.Heartbeat("nobody", {}).code(), absl::StatusCode::kNotFound);
  // The restarted worker of vm1 may register again.
  EXPECT_TRUE(registry.Register(Info("vm1")).ok());
  EXPECT_TRUE(registry.Replicas()[2].live);
}

TEST(RegistryTest, BrokenStreamAndDrainTakeReplicasOutOfRouting) {
  const Topology topology = TwoVms();
  FakeClock clock;
  Registry registry(&topology, &clock, absl::Seconds(3));
  auto w0 = registry.Register(Info("vm0"));
  auto w1 = registry.Register(Info("vm1"));
  ASSERT_TRUE(w0.ok() && w1.ok());
  registry.MarkDead(*w0);
  EXPECT_FALSE(registry.Replicas()[0].live);
  ASSERT_TRUE(registry.Drain("vm1").ok());
  EXPECT_TRUE(registry.DrainRequested(*w1));
  EXPECT_FALSE(registry.Replicas()[3].live);
  EXPECT_EQ(registry.Drain("vm5").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rackserve::coordinator
