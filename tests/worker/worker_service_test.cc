// WorkerService over a real gRPC server on 127.0.0.1 with a real client stub. The Serve data
// path: many submissions over one stream across two replicas equal to the engine's tokens,
// resume, cancel by handle, a stale cancel never reaching a resubmission of the same request_id,
// refusals as ends with their codes, draining and failed replicas, a client that cancels the call
// (the hosts end its requests), half-close with requests in flight, and the flush interval (at
// most one Write per interval, every token and end still delivered). The Drain RPC.
#include "worker/worker_service.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/wire_conversion.h"
#include "tests/worker/failing_runner.h"
#include "tests/worker/serve_stream.h"
#include "tests/worker/test_model.h"

namespace rackserve::worker {
namespace {

using ::rackserve::worker::testing::ServeStream;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);

// A StepSink gathering the tokens of one request until its final chunk.
class TokenSink : public StepSink {
 public:
  void DeliverStep(std::span<const ChunkView> chunks) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const ChunkView& c : chunks) {
      tokens_.insert(tokens_.end(), c.token_ids.begin(), c.token_ids.end());
      done_ = c.finish != sampling::FinishReason::kNone;
    }
    cv_.notify_all();
  }
  // Waits up to `timeout` for the final chunk; `tokens` gets the tokens received so far.
  bool WaitDone(absl::Duration timeout, std::vector<int32_t>* tokens) {
    std::unique_lock<std::mutex> lock(mu_);
    const bool done =
        cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return done_; });
    *tokens = tokens_;
    return done;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> tokens_;
  bool done_ = false;
};

// Two replicas of the tiny model, r0 and r1, served by a WorkerServiceImpl whose flush interval
// is FlushInterval().
class ServeTest : public ::testing::Test {
 protected:
  virtual absl::Duration FlushInterval() const { return absl::ZeroDuration(); }

  void SetUp() override {
    engine::EngineOptions options;
    options.num_threads = 2;
    auto r0 = ReplicaHost::Load("r0", testing::TinyModelDir(), options);
    ASSERT_TRUE(r0.ok()) << r0.status();
    host_ = r0->get();
    ASSERT_TRUE(registry_.Add(*std::move(r0)).ok());
    options.num_threads = 1;
    auto r1 = ReplicaHost::Load("r1", testing::TinyModelDir(), options);
    ASSERT_TRUE(r1.ok()) << r1.status();
    r1_ = r1->get();
    ASSERT_TRUE(registry_.Add(*std::move(r1)).ok());

    service_ = std::make_unique<WorkerServiceImpl>(&registry_, FlushInterval());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    stub_ = v1::WorkerService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                           grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  static v1::ReplicaRequest ServeRequest(uint64_t handle, const std::string& replica,
                                         int64_t max_new) {
    v1::ReplicaRequest r;
    r.set_replica_id(replica);
    r.set_request_id("q" + std::to_string(handle));
    r.set_handle(handle);
    std::mt19937_64 rng(std::hash<std::string>()(r.request_id()));
    std::uniform_int_distribution<int32_t> dist(3, 511);
    for (int i = 0; i < 9; ++i) r.add_prompt_token_ids(dist(rng));
    r.mutable_sampling()->set_max_new_tokens(max_new);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }

  // The request's tokens straight from its replica (the single-process engine).
  std::vector<int32_t> Direct(const v1::ReplicaRequest& request) {
    ReplicaHost* host = *registry_.Find(request.replica_id());
    auto params = wire::FromProto(request.sampling(), host->model_config().vocab_size);
    EXPECT_TRUE(params.ok()) << params.status();
    ReplicaRequest r;
    r.request_id = "direct-" + request.request_id();
    r.prompt.assign(request.prompt_token_ids().begin(), request.prompt_token_ids().end());
    r.sampling = *params;
    r.resume_tokens.assign(request.resume_token_ids().begin(), request.resume_token_ids().end());
    const auto sink = std::make_shared<TokenSink>();
    EXPECT_TRUE(host->Submit(r, sink, /*tag=*/0).ok());
    std::vector<int32_t> tokens;
    EXPECT_TRUE(sink->WaitDone(kWait, &tokens));
    return tokens;
  }

  bool WaitHostsIdle(absl::Duration timeout) {
    for (const absl::Time until = absl::Now() + timeout; absl::Now() < until;) {
      if (host_->requests_in_flight() == 0 && r1_->requests_in_flight() == 0) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  ReplicaRegistry registry_;
  ReplicaHost* host_ = nullptr;  // r0
  ReplicaHost* r1_ = nullptr;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
};

TEST_F(ServeTest, ManySubmissionsOverOneStreamEqualTheEngine) {
  std::mt19937_64 rng(1234);
  std::vector<v1::ReplicaRequest> requests;
  for (uint64_t i = 0; i < 64; ++i) {
    v1::ReplicaRequest r = ServeRequest(100 + i, i % 2 == 0 ? "r0" : "r1",
                                        std::uniform_int_distribution<int64_t>(1, 40)(rng));
    r.clear_prompt_token_ids();
    const int prompt_len = std::uniform_int_distribution<int>(1, 30)(rng);
    for (int t = 0; t < prompt_len; ++t) {
      r.add_prompt_token_ids(std::uniform_int_distribution<int32_t>(3, 511)(rng));
    }
    if (i % 3 == 0) {
      r.mutable_sampling()->set_temperature(0);  // greedy
    } else {
      r.mutable_sampling()->set_temperature(0.8f);
      r.mutable_sampling()->set_top_k(20);
      r.mutable_sampling()->set_seed(7 + i);
    }
    r.mutable_sampling()->set_ignore_eos(i % 4 != 1);
    requests.push_back(r);
  }
  ServeStream stream(stub_.get());
  for (size_t first = 0; first < requests.size(); first += 16) {
    v1::ServeInbound inbound;
    for (size_t i = first; i < first + 16; ++i) *inbound.add_submit() = requests[i];
    ASSERT_TRUE(stream.Send(inbound));
  }
  for (const v1::ReplicaRequest& r : requests) ASSERT_TRUE(stream.WaitEnds(r.handle()));
  const grpc::Status status = stream.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();

  int64_t tokens = 0;
  for (const v1::ReplicaRequest& r : requests) {
    const ServeStream::Submission got = stream.Get(r.handle());
    ASSERT_TRUE(got.Ended()) << "handle " << r.handle();
    EXPECT_EQ(got.ends[0].error_code(), 0) << got.ends[0].error_message();
    EXPECT_NE(got.ends[0].finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
    EXPECT_EQ(got.ends[0].prompt_tokens(), r.prompt_token_ids_size());
    EXPECT_EQ(got.tokens, Direct(r)) << "handle " << r.handle();
    tokens += static_cast<int64_t>(got.tokens.size());
  }
  // Batching: many chunks travel in one message.
  EXPECT_LT(stream.messages(), tokens);
}

TEST_F(ServeTest, ResumedSubmissionContinuesAnUninterruptedRun) {
  ServeStream stream(stub_.get());
  v1::ReplicaRequest full = ServeRequest(1, "r1", 12);
  full.mutable_sampling()->set_temperature(0.9f);
  full.mutable_sampling()->set_seed(77);
  ASSERT_TRUE(stream.Submit(full));
  ASSERT_TRUE(stream.WaitEnds(1));
  const std::vector<int32_t> all = stream.Get(1).tokens;
  ASSERT_EQ(all.size(), 12u);

  v1::ReplicaRequest resumed = full;
  resumed.set_handle(2);
  for (int i = 0; i < 5; ++i) resumed.add_resume_token_ids(all[i]);
  ASSERT_TRUE(stream.Submit(resumed));
  ASSERT_TRUE(stream.WaitEnds(2));
  const ServeStream::Submission rest = stream.Get(2);
  ASSERT_TRUE(rest.Ended());
  EXPECT_EQ(rest.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(rest.tokens, std::vector<int32_t>(all.begin() + 5, all.end()));
  EXPECT_TRUE(stream.Finish().ok());
}

TEST_F(ServeTest, CancelByHandleEndsOnlyThatSubmission) {
  ServeStream stream(stub_.get());
  for (uint64_t h = 1; h <= 3; ++h) ASSERT_TRUE(stream.Submit(ServeRequest(h, "r0", 450)));
  ASSERT_TRUE(stream.WaitTokens(2, 1));
  ASSERT_TRUE(stream.Cancel(2));
  ASSERT_TRUE(stream.Cancel(99));  // unknown: ignored
  ASSERT_TRUE(stream.WaitEnds(2));
  const ServeStream::Submission cancelled = stream.Get(2);
  ASSERT_TRUE(cancelled.Ended());
  EXPECT_EQ(cancelled.ends[0].finish_reason(), v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(cancelled.ends[0].error_code(), 0);
  EXPECT_LT(cancelled.tokens.size(), 450u);
  for (uint64_t h : {1, 3}) {
    ASSERT_TRUE(stream.WaitEnds(h));
    const ServeStream::Submission other = stream.Get(h);
    ASSERT_TRUE(other.Ended()) << "handle " << h;
    EXPECT_EQ(other.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS) << "handle " << h;
    EXPECT_EQ(other.tokens.size(), 450u) << "handle " << h;
  }
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_TRUE(stream.Get(99).ends.empty());
}

TEST_F(ServeTest, RefusalsEndWithTheirCodeNamingTheCulprit) {
  ServeStream stream(stub_.get());
  v1::ServeInbound inbound;
  *inbound.add_submit() = ServeRequest(1, "r9", 4);
  v1::ReplicaRequest bad_top_p = ServeRequest(2, "r0", 4);
  bad_top_p.mutable_sampling()->set_top_p(1.5f);
  *inbound.add_submit() = bad_top_p;
  v1::ReplicaRequest bad_token = ServeRequest(3, "r1", 4);
  bad_token.set_prompt_token_ids(2, 100000);
  *inbound.add_submit() = bad_token;
  *inbound.add_submit() = ServeRequest(4, "r0", 60);
  v1::ReplicaRequest duplicate = ServeRequest(4, "r1", 4);
  duplicate.set_request_id("dup");
  *inbound.add_submit() = duplicate;
  ASSERT_TRUE(stream.Send(inbound));
  ASSERT_TRUE(stream.WaitEnds(4));
  const grpc::Status status = stream.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();

  auto expect_refused = [&](uint64_t handle, absl::StatusCode code, const std::string& culprit) {
    const ServeStream::Submission got = stream.Get(handle);
    ASSERT_TRUE(got.Ended()) << "handle " << handle;
    EXPECT_EQ(got.ends[0].error_code(), static_cast<int>(code)) << "handle " << handle;
    EXPECT_THAT(got.ends[0].error_message(), HasSubstr(culprit));
    EXPECT_TRUE(got.tokens.empty());
  };
  expect_refused(1, absl::StatusCode::kNotFound, "replica_id 'r9'");
  expect_refused(2, absl::StatusCode::kInvalidArgument, "sampling.top_p");
  expect_refused(3, absl::StatusCode::kInvalidArgument, "prompt_token_ids[2] = 100000");
  // The duplicate was refused at once; the submission in flight under handle 4 ran to its end.
  const ServeStream::Submission kept = stream.Get(4);
  ASSERT_EQ(kept.ends.size(), 2u);
  EXPECT_EQ(kept.ends[0].error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(kept.ends[0].error_message(), HasSubstr("handle: 4"));
  EXPECT_THAT(kept.ends[0].error_message(), HasSubstr("'dup'"));
  EXPECT_EQ(kept.ends[1].error_code(), 0);
  EXPECT_EQ(kept.ends[1].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(kept.tokens.size(), 60u);
}

TEST_F(ServeTest, DrainingReplicaEndsSubmissionsUnavailable) {
  host_->Drain();
  ServeStream stream(stub_.get());
  ASSERT_TRUE(stream.Submit(ServeRequest(1, "r0", 4)));
  ASSERT_TRUE(stream.Submit(ServeRequest(2, "r1", 4)));
  ASSERT_TRUE(stream.WaitEnds(1));
  ASSERT_TRUE(stream.WaitEnds(2));
  EXPECT_TRUE(stream.Finish().ok());
  const ServeStream::Submission refused = stream.Get(1);
  ASSERT_TRUE(refused.Ended());
  EXPECT_EQ(refused.ends[0].error_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(refused.ends[0].error_message(), HasSubstr("draining"));
  const ServeStream::Submission served = stream.Get(2);
  ASSERT_TRUE(served.Ended());
  EXPECT_EQ(served.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
}

// A replica whose engine fails ends its submissions UNAVAILABLE, after the tokens they had, naming
// the replica and the failure; it refuses later ones the same way and advertises no credit, while
// the healthy replica beside it still serves.
TEST_F(ServeTest, FailedReplicaEndsSubmissionsUnavailable) {
  engine::EngineOptions options;
  options.num_threads = 1;
  auto failing = testing::LoadFailingHost("r2", testing::TinyModelDir(), /*fail_at=*/4, options);
  ASSERT_TRUE(failing.ok()) << failing.status();
  ReplicaHost* r2 = failing->get();
  ASSERT_TRUE(registry_.Add(*std::move(failing)).ok());
  ServeStream stream(stub_.get());
  ASSERT_TRUE(stream.Submit(ServeRequest(1, "r2", 50)));
  ASSERT_TRUE(stream.WaitEnds(1));
  const ServeStream::Submission got = stream.Get(1);
  ASSERT_TRUE(got.Ended());
  EXPECT_EQ(got.ends[0].error_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(got.ends[0].error_message(), HasSubstr("replica 'r2'"));
  EXPECT_THAT(got.ends[0].error_message(), HasSubstr("injected failure"));
  EXPECT_LT(got.tokens.size(), 50u);

  ASSERT_TRUE(stream.Submit(ServeRequest(2, "r2", 4)));
  ASSERT_TRUE(stream.Submit(ServeRequest(3, "r0", 3)));
  ASSERT_TRUE(stream.WaitEnds(2));
  ASSERT_TRUE(stream.WaitEnds(3));
  EXPECT_TRUE(stream.Finish().ok());
  const ServeStream::Submission refused = stream.Get(2);
  ASSERT_TRUE(refused.Ended());
  EXPECT_EQ(refused.ends[0].error_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(refused.ends[0].error_message(), HasSubstr("'q2' not admitted"));
  EXPECT_TRUE(refused.tokens.empty());
  EXPECT_EQ(r2->counters().free_token_credit, 0);
  const ServeStream::Submission healthy = stream.Get(3);
  ASSERT_TRUE(healthy.Ended());
  EXPECT_EQ(healthy.ends[0].error_code(), 0) << healthy.ends[0].error_message();
  EXPECT_EQ(healthy.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(healthy.tokens.size(), 3u);
}

// A cancel that arrives after its submission ended — while the coordinator already resubmitted
// the same request_id under a new handle (failover) — ends nothing: the session cancels by
// handle and submission, so every resubmission completes. Each round cancels a submission right
// after its first token and resends that stale cancel beside every resubmission until the
// replica accepts one (ALREADY_EXISTS while the cancelled one still runs).
TEST_F(ServeTest, StaleCancelNeverEndsAResubmissionOfTheSameId) {
  ServeStream stream(stub_.get());
  uint64_t next_handle = 1;
  for (int round = 0; round < 20; ++round) {
    v1::ReplicaRequest first = ServeRequest(next_handle++, "r0", 2);
    first.set_request_id("same");
    ASSERT_TRUE(stream.Submit(first));
    ASSERT_TRUE(stream.WaitTokens(first.handle(), 1)) << "round " << round;
    ASSERT_TRUE(stream.Cancel(first.handle()));
    ServeStream::Submission again;
    for (const absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      v1::ServeInbound inbound;
      v1::ReplicaRequest* resubmitted = inbound.add_submit();
      *resubmitted = ServeRequest(next_handle++, "r0", 6);
      resubmitted->set_request_id("same");
      inbound.add_cancel(first.handle());
      ASSERT_TRUE(stream.Send(inbound));
      ASSERT_TRUE(stream.WaitEnds(resubmitted->handle())) << "round " << round;
      again = stream.Get(resubmitted->handle());
      if (again.ends[0].error_code() != static_cast<int>(absl::StatusCode::kAlreadyExists)) break;
    }
    ASSERT_TRUE(again.Ended()) << "round " << round;
    EXPECT_EQ(again.ends[0].error_code(), 0)
        << "round " << round << ": " << again.ends[0].error_message();
    EXPECT_EQ(again.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS) << "round " << round;
    EXPECT_EQ(again.tokens.size(), 6u) << "round " << round;
    ASSERT_TRUE(stream.WaitEnds(first.handle())) << "round " << round;
  }
  EXPECT_TRUE(stream.Finish().ok());
}

// The Drain RPC drains every replica: the request in flight runs to its end, new submissions end
// UNAVAILABLE naming the draining replica.
TEST_F(ServeTest, DrainRpcDrainsEveryReplicaAndRefusesNewSubmissions) {
  ServeStream stream(stub_.get());
  ASSERT_TRUE(stream.Submit(ServeRequest(1, "r0", 200)));
  ASSERT_TRUE(stream.WaitTokens(1, 1));
  grpc::ClientContext context;
  v1::DrainResponse response;
  const grpc::Status drained = stub_->Drain(&context, v1::DrainRequest(), &response);
  ASSERT_TRUE(drained.ok()) << drained.error_message();
  EXPECT_EQ(response.requests_left(), 1);
  EXPECT_TRUE(host_->draining());
  EXPECT_TRUE(r1_->draining());
  ASSERT_TRUE(stream.Submit(ServeRequest(2, "r1", 4)));
  ASSERT_TRUE(stream.WaitEnds(2));
  const ServeStream::Submission refused = stream.Get(2);
  ASSERT_TRUE(refused.Ended());
  EXPECT_EQ(refused.ends[0].error_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(refused.ends[0].error_message(), HasSubstr("'r1' is draining"));
  EXPECT_TRUE(refused.tokens.empty());
  ASSERT_TRUE(stream.WaitEnds(1));
  EXPECT_TRUE(stream.Finish().ok());
  const ServeStream::Submission finished = stream.Get(1);
  ASSERT_TRUE(finished.Ended());
  EXPECT_EQ(finished.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(finished.tokens.size(), 200u);
}

// The client cancels the call mid-way: the worker cancels every request it had submitted.
TEST_F(ServeTest, CancelledCallEndsTheHostsRequests) {
  ServeStream stream(stub_.get());
  v1::ServeInbound inbound;
  for (uint64_t h = 1; h <= 8; ++h) {
    *inbound.add_submit() = ServeRequest(h, h % 2 == 0 ? "r0" : "r1", 450);
  }
  ASSERT_TRUE(stream.Send(inbound));
  ASSERT_TRUE(stream.WaitTokens(1, 2));
  stream.TryCancel();
  EXPECT_EQ(stream.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitHostsIdle(absl::Seconds(5)));
  EXPECT_LT(host_->counters().generated_tokens + r1_->counters().generated_tokens, 8 * 450);
  EXPECT_EQ(host_->counters().kv_blocks_used, 0);
}

// Half-close with submissions in flight: every end still arrives, then the call ends OK.
TEST_F(ServeTest, HalfCloseWaitsForEveryEnd) {
  ServeStream stream(stub_.get());
  v1::ServeInbound inbound;
  for (uint64_t h = 1; h <= 10; ++h) {
    *inbound.add_submit() = ServeRequest(h, h % 2 == 0 ? "r0" : "r1", 5 + 3 * h);
  }
  ASSERT_TRUE(stream.Send(inbound));
  const grpc::Status status = stream.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  for (uint64_t h = 1; h <= 10; ++h) {
    const ServeStream::Submission got = stream.Get(h);
    ASSERT_TRUE(got.Ended()) << "handle " << h;
    EXPECT_EQ(got.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
    EXPECT_EQ(got.tokens.size(), 5 + 3 * h);
  }
}

// The same service writing at most once per 50 ms.
class ServeFlushTest : public ServeTest {
 protected:
  static constexpr absl::Duration kInterval = absl::Milliseconds(50);
  absl::Duration FlushInterval() const override { return kInterval; }
};

// Tokens produced between two Writes pile up and go in the next one: a run of many submissions
// takes at most one message per interval (plus the first and the last), and every token and end
// still arrives, equal to the engine's.
TEST_F(ServeFlushTest, WritesAtMostOncePerIntervalAndDeliversEverything) {
  std::vector<v1::ReplicaRequest> requests;
  v1::ServeInbound inbound;
  for (uint64_t h = 1; h <= 12; ++h) {
    requests.push_back(ServeRequest(h, h % 2 == 0 ? "r0" : "r1", 20 + 10 * h));
    *inbound.add_submit() = requests.back();
  }
  ServeStream stream(stub_.get());
  const absl::Time start = absl::Now();
  ASSERT_TRUE(stream.Send(inbound));
  const grpc::Status status = stream.Finish();
  const absl::Duration duration = absl::Now() - start;
  EXPECT_TRUE(status.ok()) << status.error_message();

  int64_t tokens = 0;
  for (const v1::ReplicaRequest& r : requests) {
    const ServeStream::Submission got = stream.Get(r.handle());
    ASSERT_TRUE(got.Ended()) << "handle " << r.handle();
    EXPECT_EQ(got.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
    EXPECT_EQ(got.tokens, Direct(r)) << "handle " << r.handle();
    tokens += static_cast<int64_t>(got.tokens.size());
  }
  const int64_t limit = duration / kInterval + 2;
  EXPECT_LE(stream.messages(), limit) << "over " << duration << " for " << tokens << " tokens";
  EXPECT_LT(stream.messages(), tokens);
}

}  // namespace
}  // namespace rackserve::worker
