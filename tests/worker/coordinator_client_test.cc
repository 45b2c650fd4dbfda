// CoordinatorClient against a fake CoordinatorService (a real gRPC server): the RegisterRequest
// it sends, assignments, heartbeats with counters, retry while the coordinator is down, a final
// refusal, and drain through the heartbeat stream.
#include "worker/coordinator_client.h"

#include <atomic>
#include <memory>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/fake_coordinator.h"

namespace rackserve::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);

WorkerIdentity Identity() {
  WorkerIdentity identity;
  identity.vm = "vm0";
  identity.address = "127.0.0.1:4567";
  identity.num_devices = 2;
  identity.model = "/models/tiny";
  identity.memory_bytes = 1 << 20;
  return identity;
}

v1::RegisterResponse TwoReplicas() {
  v1::RegisterResponse response;
  response.set_worker_id("w-7");
  response.set_heartbeat_interval_seconds(0.05);
  for (int d = 0; d < 2; ++d) {
    v1::ReplicaAssignment* a = response.add_assignments();
    a->set_replica_id("r" + std::to_string(d));
    a->set_tp(1);
    a->set_pp(1);
    a->set_leader_here(true);
    v1::RankPlacement* rank = a->add_ranks();
    rank->set_vm("vm0");
    rank->set_device(d);
  }
  return response;
}

ReplicaCounters Counters(const std::string& id) {
  ReplicaCounters c;
  c.replica_id = id;
  c.generated_tokens = 42;
  c.prompt_tokens = 7;
  c.steps = 5;
  c.kv_blocks_total = 64;
  c.kv_blocks_used = 4;
  c.free_token_credit = 60 * 16;
  c.reserved_tokens = 64;
  c.busy_seconds = 0.25;
  c.idle_seconds = 0.5;
  return c;
}

TEST(CoordinatorClientTest, RegistersThenHeartbeatsCounters) {
  testing::FakeCoordinator coordinator;
  coordinator.SetResponse(TwoReplicas());
  std::vector<Assignment> assigned;
  CoordinatorClientOptions options;
  options.on_assignments = [&](const std::vector<Assignment>& a) {
    assigned = a;
    return absl::OkStatus();
  };
  // What the replicas did before this registration (an earlier one's work) is not reported.
  std::atomic<int> progress{0};
  options.counters = [&] {
    std::vector<ReplicaCounters> all = {Counters("r0"), Counters("r1")};
    all[1].generated_tokens += 100 * progress;
    all[1].busy_seconds += progress;
    return all;
  };
  CoordinatorClient client(coordinator.address(), Identity(), options);
  client.Start();
  ASSERT_TRUE(client.WaitRegistered(kWait));
  EXPECT_EQ(client.worker_id(), "w-7");
  ASSERT_TRUE(coordinator.WaitHeartbeats(1, kWait));
  progress = 1;
  const int seen = static_cast<int>(coordinator.heartbeats().size());
  ASSERT_TRUE(coordinator.WaitHeartbeats(seen + 2, kWait));
  client.Stop();

  const std::vector<v1::RegisterRequest> registrations = coordinator.registrations();
  ASSERT_EQ(registrations.size(), 1u);
  const v1::RegisterRequest& r = registrations[0];
  EXPECT_EQ(r.protocol_version(), kProtocolVersion);
  EXPECT_EQ(r.vm(), "vm0");
  EXPECT_EQ(r.address(), "127.0.0.1:4567");
  EXPECT_EQ(r.model(), "/models/tiny");
  EXPECT_EQ(r.memory_bytes(), 1 << 20);
  ASSERT_EQ(r.devices_size(), 2);
  EXPECT_EQ(r.devices(1).index(), 1);
  EXPECT_EQ(r.devices(1).kind(), "cpu");

  ASSERT_EQ(assigned.size(), 2u);
  EXPECT_EQ(assigned[1].replica_id, "r1");
  EXPECT_THAT(assigned[1].local_devices, ElementsAre(1));
  EXPECT_TRUE(assigned[1].leader_here);

  const v1::Heartbeat first = coordinator.heartbeats().front();
  EXPECT_EQ(first.worker_id(), "w-7");
  ASSERT_EQ(first.replicas_size(), 2);
  EXPECT_EQ(first.replicas(1).replica_id(), "r1");
  EXPECT_EQ(first.replicas(1).generated_tokens(), 0);
  EXPECT_EQ(first.replicas(1).free_token_credit(), 960);  // gauges as they are
  EXPECT_EQ(first.replicas(1).kv_blocks_used(), 4);
  EXPECT_EQ(first.replicas(1).reserved_tokens(), 64);
  EXPECT_NEAR(first.replicas(1).read_at_unix_seconds(),
              absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()), 60);
  const v1::Heartbeat last = coordinator.heartbeats().back();
  EXPECT_EQ(last.replicas(1).generated_tokens(), 100);
  EXPECT_DOUBLE_EQ(last.replicas(1).busy_seconds(), 1.0);
  EXPECT_DOUBLE_EQ(last.replicas(1).idle_seconds(), 0);
  EXPECT_EQ(last.replicas(0).generated_tokens(), 0);
  EXPECT_GE(client.heartbeats_sent(), 3);
}

TEST(CoordinatorClientTest, RetriesUntilTheCoordinatorIsUp) {
  // A port that was free a moment ago: nothing listens there yet.
  std::string address;
  {
    testing::FakeCoordinator probe;
    address = probe.address();
  }
  CoordinatorClientOptions options;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  CoordinatorClient client(address, Identity(), options);
  client.Start();
  EXPECT_FALSE(client.WaitRegistered(absl::Milliseconds(500)));
  EXPECT_TRUE(client.status().ok());
  testing::FakeCoordinator coordinator(address);
  ASSERT_TRUE(client.WaitRegistered(kWait));
  ASSERT_TRUE(coordinator.WaitHeartbeats(1, kWait));
}

TEST(CoordinatorClientTest, RegistersAgainWhenTheStreamBreaks) {
  auto coordinator = std::make_unique<testing::FakeCoordinator>();
  const std::string address = coordinator->address();
  int assignments_calls = 0;
  CoordinatorClientOptions options;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.on_assignments = [&](const std::vector<Assignment>&) {
    ++assignments_calls;
    return absl::OkStatus();
  };
  CoordinatorClient client(address, Identity(), options);
  client.Start();
  ASSERT_TRUE(coordinator->WaitHeartbeats(2, kWait));
  coordinator.reset();  // the coordinator restarts: the stream breaks
  coordinator = std::make_unique<testing::FakeCoordinator>(address);
  ASSERT_TRUE(coordinator->WaitRegistrations(1, kWait));
  ASSERT_TRUE(coordinator->WaitHeartbeats(1, kWait));
  client.Stop();
  EXPECT_EQ(assignments_calls, 2);
}

TEST(CoordinatorClientTest, RefusalIsFinalAndNamesTheVm) {
  testing::FakeCoordinator coordinator;
  coordinator.SetRefusal(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "vm 'vm0' is not in the topology"));
  CoordinatorClient client(coordinator.address(), Identity(), {});
  client.Start();
  EXPECT_FALSE(client.WaitRegistered(kWait));
  const absl::Status s = client.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("not in the topology"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'vm0'"));
  EXPECT_EQ(coordinator.registrations().size(), 1u);
}

TEST(CoordinatorClientTest, FailedAssignmentStopsTheClient) {
  testing::FakeCoordinator coordinator;
  coordinator.SetResponse(TwoReplicas());
  CoordinatorClientOptions options;
  options.on_assignments = [](const std::vector<Assignment>&) {
    return absl::UnimplementedError("replica 'r0' has tp = 2");
  };
  CoordinatorClient client(coordinator.address(), Identity(), options);
  client.Start();
  EXPECT_FALSE(client.WaitRegistered(kWait));
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("'r0'"));
}

TEST(CoordinatorClientTest, DrainAckCallsOnDrain) {
  testing::FakeCoordinator coordinator;
  coordinator.RequestDrain();
  std::atomic<bool> drained{false};
  CoordinatorClientOptions options;
  options.on_drain = [&] { drained = true; };
  CoordinatorClient client(coordinator.address(), Identity(), options);
  client.Start();
  ASSERT_TRUE(coordinator.WaitHeartbeats(1, kWait));
  const absl::Time deadline = absl::Now() + kWait;
  while (!drained && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE(drained);
}

}  // namespace
}  // namespace rackserve::worker
