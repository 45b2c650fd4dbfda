// rackserve-worker as a real process: it registers with a fake coordinator (its real bound port
// in the address), loads its assigned replica, serves a request over gRPC, reports the tokens
// in its heartbeats, and exits 0 after SIGTERM.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/worker/fake_coordinator.h"
#include "tests/worker/test_model.h"

namespace rackserve::worker {
namespace {

using ::rackserve::testing::Child;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::Duration kWait = absl::Seconds(30);

TEST(WorkerProcessTest, RegistersServesHeartbeatsAndDrainsOnSigterm) {
  testing::FakeCoordinator coordinator;
  v1::RegisterResponse response;
  response.set_worker_id("w-1");
  response.set_heartbeat_interval_seconds(0.1);
  v1::ReplicaAssignment* a = response.add_assignments();
  a->set_replica_id("vm0/r0");
  a->set_tp(1);
  a->set_pp(1);
  a->set_leader_here(true);
  a->add_ranks()->set_vm("vm0");
  coordinator.SetResponse(response);

  const std::string log = ::testing::TempDir() + "/rackserve_worker_process_test.log";
  Child worker({RACKSERVE_WORKER_BINARY, "--coordinator", coordinator.address(), "--vm", "vm0",
                "--listen", "127.0.0.1:0", "--model", testing::TinyModelDir(), "--devices", "1",
                "--threads", "1", "--kv-cache-mb", "8"},
               log);
  ASSERT_TRUE(worker.started());
  ASSERT_TRUE(coordinator.WaitRegistrations(1, kWait)) << "see " << log;
  const v1::RegisterRequest registration = coordinator.registrations()[0];
  EXPECT_EQ(registration.vm(), "vm0");
  EXPECT_EQ(registration.devices_size(), 1);
  EXPECT_EQ(registration.model(), testing::TinyModelDir());
  ASSERT_THAT(registration.address(), StartsWith("127.0.0.1:"));
  EXPECT_NE(registration.address(), "127.0.0.1:0");  // the real bound port
  ASSERT_TRUE(coordinator.WaitHeartbeats(1, kWait));

  auto stub = v1::WorkerService::NewStub(
      grpc::CreateChannel(registration.address(), grpc::InsecureChannelCredentials()));
  v1::ReplicaRequest request;
  request.set_replica_id("vm0/r0");
  request.set_request_id("q");
  for (int32_t t : {5, 17, 99, 3}) request.add_prompt_token_ids(t);
  request.mutable_sampling()->set_max_new_tokens(8);
  request.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  auto reader = stub->Submit(&context, request);
  int64_t tokens = 0;
  v1::TokenChunk chunk;
  while (reader->Read(&chunk)) tokens += chunk.token_ids_size();
  const grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(tokens, 8);

  // A later heartbeat counts the tokens.
  const absl::Time deadline = absl::Now() + kWait;
  int64_t reported = 0;
  while (reported != 8 && absl::Now() < deadline) {
    const std::vector<v1::Heartbeat> heartbeats = coordinator.heartbeats();
    const v1::Heartbeat& last = heartbeats.back();
    if (last.replicas_size() == 1) reported = last.replicas(0).generated_tokens();
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(reported, 8);
  EXPECT_EQ(coordinator.heartbeats().back().worker_id(), "w-1");

  worker.Signal(SIGTERM);
  EXPECT_EQ(worker.WaitExit(kWait), 0) << "see " << log;
}

TEST(WorkerProcessTest, RefusedRegistrationExitsWithTheReason) {
  testing::FakeCoordinator coordinator;
  coordinator.SetRefusal(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "vm 'vmX' is not in the topology"));
  const std::string log = ::testing::TempDir() + "/rackserve_worker_process_refused.log";
  Child worker({RACKSERVE_WORKER_BINARY, "--coordinator", coordinator.address(), "--vm", "vmX",
                "--model", testing::TinyModelDir()},
               log);
  ASSERT_TRUE(worker.started());
  EXPECT_EQ(worker.WaitExit(kWait), 1);
  const std::string output = worker.Log();
  EXPECT_THAT(output, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(output, HasSubstr("vm 'vmX' is not in the topology"));
}

}  // namespace
}  // namespace rackserve::worker
