#include "coordinator/registry.h"

#include <string>
#include <vector>

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
  EXPECT_EQ(replicas[0].credit_budget, 500);
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
  const absl::Status unknown = registry.Drain("vm5");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("\"vm5\""));
  EXPECT_EQ(registry.Resume("vm5").code(), absl::StatusCode::kNotFound);
}

TEST(RegistryTest, DrainMarksReplicasDrainingAndResumeUndoesIt) {
  const Topology topology = TwoVms();
  FakeClock clock;
  Registry registry(&topology, &clock, absl::Seconds(3));
  auto w0 = registry.Register(Info("vm0"));
  auto w1 = registry.Register(Info("vm1"));
  ASSERT_TRUE(w0.ok() && w1.ok());
  ASSERT_TRUE(registry.Drain("vm1").ok());
  std::string address;
  EXPECT_EQ(registry.VmState("vm1", &address), WorkerState::kDraining);
  EXPECT_TRUE(registry.Replicas()[2].draining);
  EXPECT_FALSE(registry.Replicas()[2].live);
  EXPECT_TRUE(registry.Alive(*w1));  // a draining worker still serves what it runs
  ASSERT_TRUE(registry.Resume("vm1").ok());
  EXPECT_EQ(registry.VmState("vm1", &address), WorkerState::kReady);
  EXPECT_TRUE(registry.Replicas()[2].live);
  EXPECT_FALSE(registry.DrainRequested(*w1));
  // A dead worker stays dead.
  registry.MarkDead(*w0);
  ASSERT_TRUE(registry.Drain("vm0").ok());
  ASSERT_TRUE(registry.Resume("vm0").ok());
  EXPECT_EQ(registry.VmState("vm0", &address), WorkerState::kDead);
  EXPECT_FALSE(registry.Replicas()[0].draining);
}

TEST(RegistryTest, ReplicasNameTheirWorkersAndCarryTheLeadersLoad) {
  const Topology topology = TwoVms();
  FakeClock clock;
  Registry registry(&topology, &clock, absl::Seconds(3));
  auto w0 = registry.Register(Info("vm0"));
  ASSERT_TRUE(w0.ok());
  ReplicaReport r0{"r0", 0, 0, 900};
  r0.running = 3;
  r0.waiting = 2;
  r0.kv_blocks_used = 10;
  r0.kv_blocks_total = 100;
  r0.reserved_tokens = 300;
  ReplicaReport r1{"r1", 0, 0, 0};  // admits nothing (draining or failed)
  r1.reserved_tokens = 50;
  r1.running = 1;
  r1.kv_blocks_used = 4;
  r1.kv_blocks_total = 100;
  ASSERT_TRUE(registry.Heartbeat(*w0, {r0, r1}).ok());
  const std::vector<ReplicaStatus> replicas = registry.Replicas();
  EXPECT_EQ(replicas[0].leader_worker_id, *w0);
  EXPECT_EQ(replicas[0].worker_ids, std::vector<std::string>{*w0});
  EXPECT_EQ(replicas[0].load.running, 3);
  EXPECT_EQ(replicas[0].load.waiting, 2);
  EXPECT_EQ(replicas[0].load.kv_blocks_used, 10);
  EXPECT_EQ(replicas[0].credit_budget, 1200);  // free + reserved
  EXPECT_EQ(replicas[1].credit_budget, 0);
  EXPECT_EQ(replicas[2].leader_worker_id, "");  // vm1 has no worker
  EXPECT_TRUE(replicas[2].worker_ids.empty());
  const LoadFigures vm0 = registry.VmLoad("vm0");
  EXPECT_EQ(vm0.running, 4);
  EXPECT_EQ(vm0.waiting, 2);
  EXPECT_EQ(vm0.kv_blocks_used, 14);
  EXPECT_EQ(vm0.kv_blocks_total, 200);
  EXPECT_EQ(registry.VmLoad("vm1").kv_blocks_total, 0);
}

TEST(RegistryTest, DeadWorkersAreForgottenOnceSupersededOrAfterABoundedTime) {
  const Topology topology = TwoVms();
  FakeClock clock;
  Registry registry(&topology, &clock, absl::Seconds(3));
  auto first = registry.Register(Info("vm0"));
  auto other = registry.Register(Info("vm1"));
  ASSERT_TRUE(first.ok() && other.ok());
  EXPECT_TRUE(registry.TakeForgotten().empty());
  // vm0 restarts many times: only its latest worker is kept.
  std::string latest = *first;
  for (int i = 0; i < 5; ++i) {
    registry.MarkDead(latest);
    EXPECT_FALSE(registry.Alive(latest));
    auto next = registry.Register(Info("vm0"));
    ASSERT_TRUE(next.ok());
    const std::vector<ForgottenWorker> forgotten = registry.TakeForgotten();
    ASSERT_EQ(forgotten.size(), 1u);
    EXPECT_EQ(forgotten[0].worker_id, latest);
    EXPECT_EQ(forgotten[0].address, "127.0.0.1:1");
    EXPECT_EQ(registry.VmOf(latest), "");
    EXPECT_EQ(registry.Heartbeat(latest, {}).code(), absl::StatusCode::kNotFound);
    latest = *next;
  }
  EXPECT_TRUE(registry.Alive(latest));
  // vm1's worker dies and no successor comes: forgotten kForgetDeadAfter later.
  registry.MarkDead(*other);
  clock.Advance(Registry::kForgetDeadAfter - absl::Seconds(1));
  ASSERT_TRUE(registry.Heartbeat(latest, {}).ok());
  registry.ExpireDead();
  EXPECT_TRUE(registry.TakeForgotten().empty());
  clock.Advance(absl::Seconds(2));
  ASSERT_TRUE(registry.Heartbeat(latest, {}).ok());
  EXPECT_TRUE(registry.ExpireDead().empty());
  const std::vector<ForgottenWorker> forgotten = registry.TakeForgotten();
  ASSERT_EQ(forgotten.size(), 1u);
  EXPECT_EQ(forgotten[0].worker_id, *other);
  std::string address = "x";
  EXPECT_EQ(registry.VmState("vm1", &address), WorkerState::kDead);
  EXPECT_EQ(address, "");
  EXPECT_EQ(registry.WorkerOf("vm1"), std::nullopt);
  EXPECT_TRUE(registry.Register(Info("vm1")).ok());
}

}  // namespace
}  // namespace rackserve::coordinator
