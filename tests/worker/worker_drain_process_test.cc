// rackserve-worker as a real process: once draining, it accepts no new assignments, also when it
// registers again. The worker drains at the fake coordinator's request, the coordinator then
// "restarts" (a new one on the same address, assigning one more replica), the worker registers
// with it and must neither create the new replica nor stop draining the old one.
#include <memory>
#include <string>
#include <vector>

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

constexpr absl::Duration kWait = absl::Seconds(30);

void Assign(v1::RegisterResponse* response, const std::string& replica_id) {
  v1::ReplicaAssignment* a = response->add_assignments();
  a->set_replica_id(replica_id);
  a->set_tp(1);
  a->set_pp(1);
  a->set_leader_here(true);
  a->add_ranks()->set_vm("vm0");
}

// Submits a one-token request to `replica_id` on a Serve stream of its own and half-closes; how
// the submission ended: OK when it finished with its token, else its end's code and message (or
// the call's status when the call failed).
grpc::Status Submit(v1::WorkerService::Stub& worker, const std::string& replica_id) {
  testing::ServeStream stream(&worker);
  v1::ReplicaRequest request;
  request.set_replica_id(replica_id);
  request.set_request_id("q");
  request.set_handle(1);
  request.add_prompt_token_ids(5);
  request.mutable_sampling()->set_max_new_tokens(1);
  request.mutable_sampling()->set_ignore_eos(true);
  stream.Submit(request);
  const grpc::Status call = stream.Finish();
  if (!call.ok()) return call;
  const testing::ServeStream::Submission got = stream.Get(1);
  EXPECT_TRUE(got.Ended());
  if (got.ends.empty()) return grpc::Status(grpc::StatusCode::INTERNAL, "no end for handle 1");
  const v1::SubmissionEnd& end = got.ends[0];
  if (end.error_code() != 0) {
    return grpc::Status(static_cast<grpc::StatusCode>(end.error_code()), end.error_message());
  }
  EXPECT_EQ(end.finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(got.tokens.size(), 1u);
  return grpc::Status::OK;
}

TEST(WorkerDrainProcessTest, DrainingWorkerAcceptsNoNewAssignmentsAfterRegisteringAgain) {
  auto coordinator = std::make_unique<testing::FakeCoordinator>();
  const std::string address = coordinator->address();
  v1::RegisterResponse response;
  response.set_worker_id("w-1");
  response.set_heartbeat_interval_seconds(0.1);
  Assign(&response, "r0");
  coordinator->SetResponse(response);

  const std::string log = ::testing::TempDir() + "/rackserve_worker_drain_process_test.log";
  Child worker({RACKSERVE_WORKER_BINARY, "--coordinator", address, "--vm", "vm0", "--model",
                testing::TinyModelDir(), "--devices", "2", "--threads", "1", "--kv-cache-mb", "8"},
               log);
  ASSERT_TRUE(worker.started());
  ASSERT_TRUE(coordinator->WaitRegistrations(1, kWait)) << "see " << log;
  ASSERT_TRUE(coordinator->WaitHeartbeats(1, kWait)) << "see " << log;
  auto stub = v1::WorkerService::NewStub(grpc::CreateChannel(
      coordinator->registrations()[0].address(), grpc::InsecureChannelCredentials()));
  ASSERT_TRUE(Submit(*stub, "r0").ok());

  coordinator->RequestDrain();
  grpc::Status refused;
  for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
    refused = Submit(*stub, "r0");
    if (!refused.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("'r0' is draining"));

  // The coordinator restarts on the same address and assigns one more replica.
  coordinator.reset();
  coordinator = std::make_unique<testing::FakeCoordinator>(address);
  response.set_worker_id("w-2");
  Assign(&response, "r1");
  coordinator->SetResponse(response);
  ASSERT_TRUE(coordinator->WaitRegistrations(1, kWait)) << "see " << log;
  ASSERT_TRUE(coordinator->WaitHeartbeats(3, kWait)) << "see " << log;
  const v1::Heartbeat last = coordinator->heartbeats().back();
  ASSERT_EQ(last.replicas_size(), 1);
  EXPECT_EQ(last.replicas(0).replica_id(), "r0");
  const grpc::Status unknown = Submit(*stub, "r1");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND) << unknown.error_message();
  EXPECT_THAT(unknown.error_message(), HasSubstr("'r1'"));
  EXPECT_EQ(Submit(*stub, "r0").error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace rackserve::worker
