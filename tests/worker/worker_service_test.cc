// WorkerService over a real gRPC server on 127.0.0.1 with a real client stub: streamed chunks,
// client cancel mid-stream (never reaching a resubmission of the same id), the Cancel and Drain
// RPCs, a failed replica's streams ending UNAVAILABLE, unknown replica and bad fields.
#include "worker/worker_service.h"

#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/failing_runner.h"
#include "tests/worker/test_model.h"

namespace rackserve::worker {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);

class WorkerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::EngineOptions options;
    options.num_threads = 2;
    auto host = ReplicaHost::Load("r0", testing::TinyModelDir(), options);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = host->get();
    ASSERT_TRUE(registry_.Add(*std::move(host)).ok());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    stub_ = v1::WorkerService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                           grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  static v1::ReplicaRequest Request(const std::string& id, int64_t max_new) {
    v1::ReplicaRequest r;
    r.set_replica_id("r0");
    r.set_request_id(id);
    std::mt19937_64 rng(std::hash<std::string>()(id));
    std::uniform_int_distribution<int32_t> dist(3, 511);
    for (int i = 0; i < 9; ++i) r.add_prompt_token_ids(dist(rng));
    r.mutable_sampling()->set_max_new_tokens(max_new);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }

  struct Streamed {
    std::vector<int32_t> tokens;
    std::vector<v1::TokenChunk> chunks;
    grpc::Status status;
  };
  Streamed SubmitAndRead(const v1::ReplicaRequest& r) {
    Streamed out;
    grpc::ClientContext context;
    auto reader = stub_->Submit(&context, r);
    v1::TokenChunk chunk;
    while (reader->Read(&chunk)) {
      out.tokens.insert(out.tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
      out.chunks.push_back(chunk);
    }
    out.status = reader->Finish();
    return out;
  }

  ReplicaRegistry registry_;
  ReplicaHost* host_ = nullptr;
  WorkerServiceImpl service_{&registry_};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
};

TEST_F(WorkerServiceTest, SubmitStreamsChunksInOrder) {
  const v1::ReplicaRequest r = Request("a", 10);
  const Streamed got = SubmitAndRead(r);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  ASSERT_EQ(got.tokens.size(), 10u);
  ASSERT_GT(got.chunks.size(), 1u);
  int64_t next = 0;
  for (size_t i = 0; i < got.chunks.size(); ++i) {
    const v1::TokenChunk& c = got.chunks[i];
    EXPECT_EQ(c.request_id(), "a");
    EXPECT_EQ(c.first_index(), next);
    next += c.token_ids_size();
    const bool last = i + 1 == got.chunks.size();
    EXPECT_EQ(c.finish_reason(),
              last ? v1::FINISH_REASON_MAX_TOKENS : v1::FINISH_REASON_UNSPECIFIED);
  }
  EXPECT_EQ(got.chunks.back().prompt_tokens(), 9);

  // The same request straight on the host gives the same tokens.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> direct;
  bool done = false;
  ReplicaRequest same;
  same.request_id = "direct";
  same.prompt.assign(r.prompt_token_ids().begin(), r.prompt_token_ids().end());
  same.sampling.max_new_tokens = 10;
  same.sampling.ignore_eos = true;
  ASSERT_TRUE(host_
                  ->Submit(same,
                           [&](const TokenChunk& c) {
                             std::lock_guard<std::mutex> lock(mu);
                             direct.insert(direct.end(), c.token_ids.begin(), c.token_ids.end());
                             done = c.finish != sampling::FinishReason::kNone;
                             cv.notify_all();
                           })
                  .ok());
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, absl::ToChronoNanoseconds(kWait), [&] { return done; }));
  EXPECT_EQ(got.tokens, direct);
}

TEST_F(WorkerServiceTest, ResumedRequestContinuesTheIndices) {
  const Streamed full = SubmitAndRead(Request("full", 12));
  ASSERT_TRUE(full.status.ok());
  v1::ReplicaRequest resumed = Request("full", 12);
  for (int i = 0; i < 4; ++i) resumed.add_resume_token_ids(full.tokens[i]);
  const Streamed rest = SubmitAndRead(resumed);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  ASSERT_FALSE(rest.chunks.empty());
  EXPECT_EQ(rest.chunks.front().first_index(), 4);
  EXPECT_EQ(rest.tokens, std::vector<int32_t>(full.tokens.begin() + 4, full.tokens.end()));
}

TEST_F(WorkerServiceTest, ClientCancelMidStreamCancelsInTheEngine) {
  grpc::ClientContext context;
  auto reader = stub_->Submit(&context, Request("long", 400));
  v1::TokenChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  context.TryCancel();
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(host_->WaitIdle(kWait));
  EXPECT_LT(host_->counters().generated_tokens, 400);
  EXPECT_EQ(host_->counters().kv_blocks_used, 0);
}

// A client that goes away as its request ends, while the coordinator resubmits the same id at once
// (failover): the handler cancels only its own submission, so every resubmission completes. (The
// race window is narrow over gRPC; replica_host_test drives it deterministically.)
TEST_F(WorkerServiceTest, ClientGoneLateNeverCancelsTheResubmission) {
  for (int round = 0; round < 20; ++round) {
    {
      grpc::ClientContext context;
      auto reader = stub_->Submit(&context, Request("same", 2));
      v1::TokenChunk chunk;
      reader->Read(&chunk);
      context.TryCancel();
      while (reader->Read(&chunk)) {
      }
      reader->Finish().IgnoreError();
    }
    Streamed again;
    for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      again = SubmitAndRead(Request("same", 6));
      if (again.status.error_code() != grpc::StatusCode::ALREADY_EXISTS) break;
    }
    ASSERT_TRUE(again.status.ok()) << "round " << round << ": " << again.status.error_message();
    EXPECT_EQ(again.tokens.size(), 6u) << "round " << round;
    EXPECT_EQ(again.chunks.back().finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  }
}

// A replica whose engine failed ends its streams UNAVAILABLE (the coordinator fails them over)
// and refuses new ones the same way, naming the replica and the failure.
TEST_F(WorkerServiceTest, FailedReplicaEndsItsStreamsUnavailable) {
  engine::EngineOptions options;
  options.num_threads = 1;
  auto failing = testing::LoadFailingHost("r1", testing::TinyModelDir(), /*fail_at=*/4, options);
  ASSERT_TRUE(failing.ok()) << failing.status();
  ReplicaHost* r1 = failing->get();
  ASSERT_TRUE(registry_.Add(*std::move(failing)).ok());

  v1::ReplicaRequest request = Request("f", 50);
  request.set_replica_id("r1");
  Streamed got = SubmitAndRead(request);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.status.error_message(), HasSubstr("replica 'r1'"));
  EXPECT_THAT(got.status.error_message(), HasSubstr("injected failure"));
  EXPECT_LT(got.tokens.size(), 50u);

  request.set_request_id("g");
  got = SubmitAndRead(request);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.status.error_message(), HasSubstr("'g' not admitted"));
  EXPECT_TRUE(got.chunks.empty());
  EXPECT_EQ(r1->counters().free_token_credit, 0);
  // The healthy replica beside it still serves.
  EXPECT_TRUE(SubmitAndRead(Request("h", 3)).status.ok());
}

TEST_F(WorkerServiceTest, CancelRpcEndsTheStreamAsCancelled) {
  grpc::ClientContext context;
  auto reader = stub_->Submit(&context, Request("c", 400));
  v1::TokenChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  {
    grpc::ClientContext cancel_context;
    v1::ReplicaCancel cancel;
    cancel.set_replica_id("r0");
    cancel.set_request_id("c");
    v1::CancelResponse response;
    const grpc::Status s = stub_->Cancel(&cancel_context, cancel, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&chunk)) finish = chunk.finish_reason();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(finish, v1::FINISH_REASON_CANCELLED);

  grpc::ClientContext unknown_context;
  v1::ReplicaCancel unknown;
  unknown.set_replica_id("r0");
  unknown.set_request_id("nope");
  v1::CancelResponse response;
  const grpc::Status s = stub_->Cancel(&unknown_context, unknown, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("'nope'"));
}

TEST_F(WorkerServiceTest, UnknownReplicaAndBadFieldsAreRejected) {
  v1::ReplicaRequest unknown = Request("u", 4);
  unknown.set_replica_id("r9");
  Streamed got = SubmitAndRead(unknown);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(got.status.error_message(), HasSubstr("replica_id 'r9'"));
  EXPECT_TRUE(got.chunks.empty());

  v1::ReplicaRequest bad_top_p = Request("p", 4);
  bad_top_p.mutable_sampling()->set_top_p(1.5f);
  got = SubmitAndRead(bad_top_p);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(got.status.error_message(), HasSubstr("sampling.top_p"));

  v1::ReplicaRequest bad_token = Request("t", 4);
  bad_token.set_prompt_token_ids(2, 100000);
  got = SubmitAndRead(bad_token);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(got.status.error_message(), HasSubstr("prompt_token_ids[2] = 100000"));
}

TEST_F(WorkerServiceTest, DrainRefusesNewRequests) {
  grpc::ClientContext context;
  v1::DrainResponse response;
  ASSERT_TRUE(stub_->Drain(&context, v1::DrainRequest(), &response).ok());
  EXPECT_EQ(response.requests_left(), 0);
  EXPECT_TRUE(host_->draining());
  const Streamed got = SubmitAndRead(Request("late", 4));
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.status.error_message(), HasSubstr("draining"));
}

}  // namespace
}  // namespace rackserve::worker
