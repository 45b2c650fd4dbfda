// rackserve-worker as a real process: it registers with a fake coordinator (its real bound port
// in the address), loads its assigned replica, serves a request over a Serve stream, reports the
// tokens in its heartbeats, and exits 0 after SIGTERM; SIGTERM while requests run finishes them
// and refuses new ones; a refused registration and a bad --serve-flush-ms exit 1 naming why.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/worker/fake_coordinator.h"
#include "tests/worker/serve_stream.h"
#include "tests/worker/test_model.h"

namespace rackserve::worker {
namespace {

using ::rackserve::testing::Child;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::Duration kWait = absl::Seconds(30);
// Tokens of each long request (the tiny model has a context of 512).
constexpr int64_t kLongTokens = 480;

// The coordinator's answer to the worker of vm0: worker "w-1", one tp 1 pp 1 replica "vm0/r0" led
// there, heartbeats every 100 ms.
v1::RegisterResponse OneReplicaOnVm0() {
  v1::RegisterResponse response;
  response.set_worker_id("w-1");
  response.set_heartbeat_interval_seconds(0.1);
  v1::ReplicaAssignment* a = response.add_assignments();
  a->set_replica_id("vm0/r0");
  a->set_tp(1);
  a->set_pp(1);
  a->set_leader_here(true);
  a->add_ranks()->set_vm("vm0");
  return response;
}

TEST(WorkerProcessTest, RegistersServesHeartbeatsAndDrainsOnSigterm) {
  testing::FakeCoordinator coordinator;
  coordinator.SetResponse(OneReplicaOnVm0());

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
  request.set_handle(7);
  for (int32_t t : {5, 17, 99, 3}) request.add_prompt_token_ids(t);
  request.mutable_sampling()->set_max_new_tokens(8);
  request.mutable_sampling()->set_ignore_eos(true);
  testing::ServeStream stream(stub.get());
  ASSERT_TRUE(stream.Submit(request));
  const grpc::Status s = stream.Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  const testing::ServeStream::Submission got = stream.Get(7);
  ASSERT_TRUE(got.Ended());
  EXPECT_EQ(got.ends[0].error_code(), 0) << got.ends[0].error_message();
  EXPECT_EQ(got.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(got.ends[0].prompt_tokens(), 4);
  EXPECT_EQ(got.tokens.size(), 8u);

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

// SIGTERM while requests run (the worker writing its Serve stream every 5 ms): the worker drains —
// every request in flight runs to its last token, a new submission is refused UNAVAILABLE naming
// the draining replica while they run — then it exits 0.
TEST(WorkerProcessTest, SigtermFinishesRequestsInFlightAndRefusesNewOnes) {
  testing::FakeCoordinator coordinator;
  coordinator.SetResponse(OneReplicaOnVm0());
  const std::string log = ::testing::TempDir() + "/rackserve_worker_process_sigterm.log";
  Child worker(
      {RACKSERVE_WORKER_BINARY, "--coordinator", coordinator.address(), "--vm", "vm0", "--model",
       testing::TinyModelDir(), "--threads", "1", "--kv-cache-mb", "8", "--serve-flush-ms", "5"},
      log);
  ASSERT_TRUE(worker.started());
  ASSERT_TRUE(coordinator.WaitRegistrations(1, kWait)) << "see " << log;
  ASSERT_TRUE(coordinator.WaitHeartbeats(1, kWait)) << "see " << log;
  auto stub = v1::WorkerService::NewStub(grpc::CreateChannel(
      coordinator.registrations()[0].address(), grpc::InsecureChannelCredentials()));

  auto request = [](uint64_t handle, int64_t max_new) {
    v1::ReplicaRequest r;
    r.set_replica_id("vm0/r0");
    r.set_request_id("q" + std::to_string(handle));
    r.set_handle(handle);
    for (int32_t t : {5, 17, 99, 3}) r.add_prompt_token_ids(t + static_cast<int32_t>(handle));
    r.mutable_sampling()->set_max_new_tokens(max_new);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  };
  testing::ServeStream stream(stub.get());
  v1::ServeInbound running;
  for (uint64_t h = 1; h <= 4; ++h) *running.add_submit() = request(h, kLongTokens);
  ASSERT_TRUE(stream.Send(running));
  // All four running (each has a token) before SIGTERM: one not yet handed to the replica when
  // the drain starts is refused (UNAVAILABLE, which the coordinator fails over), not finished.
  for (uint64_t h = 1; h <= 4; ++h) ASSERT_TRUE(stream.WaitTokens(h, 1)) << "see " << log;
  worker.Signal(SIGTERM);

  // Probes until the worker drains; the long requests still run then.
  v1::SubmissionEnd refused;
  bool in_flight_at_refusal = false;
  for (uint64_t h = 100; h < 1000 && refused.error_code() == 0; ++h) {
    ASSERT_TRUE(stream.Submit(request(h, 1)));
    ASSERT_TRUE(stream.WaitEnds(h)) << "see " << log;
    refused = stream.Get(h).ends[0];
    in_flight_at_refusal = stream.Get(4).ends.empty();
  }
  EXPECT_EQ(refused.error_code(), static_cast<int>(absl::StatusCode::kUnavailable))
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("'vm0/r0' is draining"));
  EXPECT_TRUE(in_flight_at_refusal);

  for (uint64_t h = 1; h <= 4; ++h) {
    ASSERT_TRUE(stream.WaitEnds(h)) << "see " << log;
    const testing::ServeStream::Submission got = stream.Get(h);
    ASSERT_TRUE(got.Ended()) << "handle " << h;
    EXPECT_EQ(got.ends[0].error_code(), 0) << got.ends[0].error_message();
    EXPECT_EQ(got.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS) << "handle " << h;
    EXPECT_EQ(got.tokens.size(), static_cast<size_t>(kLongTokens)) << "handle " << h;
  }
  const grpc::Status s = stream.Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(worker.WaitExit(kWait), 0) << "see " << log;
}

TEST(WorkerProcessTest, NegativeServeFlushIntervalIsRefusedNamingTheFlag) {
  const std::string log = ::testing::TempDir() + "/rackserve_worker_process_flush_flag.log";
  Child worker({RACKSERVE_WORKER_BINARY, "--coordinator", "127.0.0.1:1", "--vm", "vm0", "--model",
                testing::TinyModelDir(), "--serve-flush-ms", "-1"},
               log);
  ASSERT_TRUE(worker.started());
  EXPECT_EQ(worker.WaitExit(kWait), 1);
  EXPECT_THAT(worker.Log(), HasSubstr("--serve-flush-ms must be finite and >= 0, got -1"));
}

}  // namespace
}  // namespace rackserve::worker
