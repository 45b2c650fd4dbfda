// DirectWorkers (rackctl bench --direct) over real gRPC on loopback, against an in-process
// WorkerService standing in for a worker: samples answered before the worker's Serve stream
// breaks complete with their tokens; every sample still running on it then ends once, failed,
// naming the worker; Next() does not hang and Finish() reports the break.
#include "client/direct_workers.h"

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace rackserve::client {
namespace {

using ::testing::HasSubstr;

constexpr int kSamples = 5;
constexpr int kAnswered = 2;  // samples the worker finishes before its stream breaks
constexpr int kTokensEach = 3;

// Finishes the first kAnswered submissions with kTokensEach tokens each; once it has read all
// kSamples, ends the stream with UNAVAILABLE, the rest unanswered.
class BreakingWorker final : public v1::WorkerService::Service {
 public:
  grpc::Status Serve(
      grpc::ServerContext* /*context*/,
      grpc::ServerReaderWriter<v1::ServeOutbound, v1::ServeInbound>* stream) override {
    v1::ServeInbound inbound;
    int read = 0;
    while (read < kSamples && stream->Read(&inbound)) {
      for (const v1::ReplicaRequest& request : inbound.submit()) {
        if (read++ >= kAnswered) continue;
        v1::ServeOutbound outbound;
        outbound.add_handles(request.handle());
        outbound.add_counts(kTokensEach);
        for (int t = 0; t < kTokensEach; ++t) outbound.add_token_ids(7);
        v1::SubmissionEnd* end = outbound.add_ends();
        end->set_handle(request.handle());
        end->set_finish_reason(v1::FINISH_REASON_MAX_TOKENS);
        if (!stream->Write(outbound)) return grpc::Status::CANCELLED;
      }
    }
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the worker went away");
  }
};

TEST(DirectWorkersTest, ABrokenServeStreamFailsWhatRanOnItAndFinishSaysSo) {
  BreakingWorker service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);

  v1::Topology topology;
  v1::Vm* vm = topology.add_vms();
  vm->set_name("vm0");
  vm->set_address(absl::StrCat("127.0.0.1:", port));
  v1::Replica* replica = topology.add_replicas();
  replica->set_id("vm0-r0");
  replica->add_ranks()->set_vm("vm0");
  absl::StatusOr<std::unique_ptr<DirectWorkers>> target = DirectWorkers::Connect(topology);
  ASSERT_TRUE(target.ok()) << target.status();

  for (int i = 0; i < kSamples; ++i) {
    v1::GenerateRequest request;
    request.set_request_id(absl::StrCat("s", i));
    request.add_prompt_token_ids(5);
    request.mutable_sampling()->set_max_new_tokens(kTokensEach);
    ASSERT_TRUE((*target)->Send(static_cast<size_t>(i), request)) << "sample " << i;
  }
  (*target)->DoneSending();

  std::set<size_t> completed, failed, first_tokens;
  SampleEvent event;
  while ((*target)->Next(&event)) {
    if (event.first_token) {
      first_tokens.insert(event.sample);
      continue;
    }
    if (event.completed) {
      EXPECT_EQ(event.output_tokens, kTokensEach) << "sample " << event.sample;
      EXPECT_TRUE(completed.insert(event.sample).second) << "sample " << event.sample;
    } else {
      EXPECT_THAT(event.error, HasSubstr("Serve stream of worker vm0 broke"));
      EXPECT_TRUE(failed.insert(event.sample).second) << "sample " << event.sample;
    }
  }
  EXPECT_EQ(completed, (std::set<size_t>{0, 1}));
  EXPECT_EQ(first_tokens, completed);
  EXPECT_EQ(failed, (std::set<size_t>{2, 3, 4}));
  const absl::Status finished = (*target)->Finish();
  EXPECT_EQ(finished.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(finished.message()), HasSubstr("vm0"));
  server->Shutdown();
}

}  // namespace
}  // namespace rackserve::client
