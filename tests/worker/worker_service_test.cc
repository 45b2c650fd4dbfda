// WorkerService over a real gRPC server on 127.0.0.1 with a real client stub: streamed chunks,
// client cancel mid-stream (never reaching a resubmission of the same id), the Cancel and Drain
// RPCs, a failed replica's streams ending UNAVAILABLE, unknown replica and bad fields; and the
// Serve data path: many submissions over one stream across two replicas equal to the engine's
// tokens, resume, cancel by handle, refusals as ends with their codes, a client that cancels the
// call (the hosts end its requests), half-close with requests in flight.
#include "worker/worker_service.h"

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/wire_conversion.h"
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

// The client side of one Serve stream: a reader thread files every token and end by handle,
// checking the columns' layout.
class ServeStream {
 public:
  struct Submission {
    std::vector<int32_t> tokens;
    std::vector<v1::SubmissionEnd> ends;  // exactly one, but for a reused handle
    bool token_after_end = false;
    // The one end, when the submission ended properly.
    bool Ended() const { return ends.size() == 1 && !token_after_end; }
  };

  explicit ServeStream(v1::WorkerService::Stub* stub) : stream_(stub->Serve(&context_)) {
    reader_ = std::thread([this] {
      v1::ServeOutbound out;
      while (stream_->Read(&out)) Record(out);
    });
  }
  ~ServeStream() {
    if (reader_.joinable()) {
      context_.TryCancel();
      reader_.join();
    }
  }

  bool Send(const v1::ServeInbound& inbound) { return stream_->Write(inbound); }
  bool Submit(const v1::ReplicaRequest& request) {
    v1::ServeInbound inbound;
    *inbound.add_submit() = request;
    return Send(inbound);
  }
  bool Cancel(uint64_t handle) {
    v1::ServeInbound inbound;
    inbound.add_cancel(handle);
    return Send(inbound);
  }
  // Waits until `handle` has at least `tokens` tokens or an end.
  bool WaitTokens(uint64_t handle, size_t tokens) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(kWait), [&] {
      const Submission& s = submissions_[handle];
      return s.tokens.size() >= tokens || !s.ends.empty();
    });
  }
  bool WaitEnds(uint64_t handle, size_t ends = 1) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                             [&] { return submissions_[handle].ends.size() >= ends; });
  }
  Submission Get(uint64_t handle) {
    std::lock_guard<std::mutex> lock(mu_);
    return submissions_[handle];
  }
  // Half-closes, reads to the end and returns the call's status.
  grpc::Status Finish() {
    stream_->WritesDone();
    reader_.join();
    return stream_->Finish();
  }
  void TryCancel() { context_.TryCancel(); }
  int64_t messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  void Record(const v1::ServeOutbound& out) {
    std::lock_guard<std::mutex> lock(mu_);
    ++messages_;
    EXPECT_EQ(out.handles_size(), out.counts_size());
    int offset = 0;
    for (int i = 0; i < out.handles_size(); ++i) {
      Submission& s = submissions_[out.handles(i)];
      if (!s.ends.empty()) s.token_after_end = true;
      EXPECT_GT(out.counts(i), 0u);
      ASSERT_LE(offset + static_cast<int>(out.counts(i)), out.token_ids_size());
      s.tokens.insert(s.tokens.end(), out.token_ids().begin() + offset,
                      out.token_ids().begin() + offset + out.counts(i));
      offset += static_cast<int>(out.counts(i));
    }
    EXPECT_EQ(offset, out.token_ids_size());
    for (const v1::SubmissionEnd& end : out.ends()) {
      submissions_[end.handle()].ends.push_back(end);
    }
    changed_.notify_all();
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ServeInbound, v1::ServeOutbound>> stream_;
  std::mutex mu_;
  std::condition_variable changed_;
  absl::flat_hash_map<uint64_t, Submission> submissions_;  // guarded by mu_
  int64_t messages_ = 0;                                   // guarded by mu_
  std::thread reader_;
};

// Two replicas of the tiny model: r0 (the fixture's) and r1.
class ServeTest : public WorkerServiceTest {
 protected:
  void SetUp() override {
    WorkerServiceTest::SetUp();
    engine::EngineOptions options;
    options.num_threads = 1;
    auto host = ReplicaHost::Load("r1", testing::TinyModelDir(), options);
    ASSERT_TRUE(host.ok()) << host.status();
    r1_ = host->get();
    ASSERT_TRUE(registry_.Add(*std::move(host)).ok());
  }

  static v1::ReplicaRequest ServeRequest(uint64_t handle, const std::string& replica,
                                         int64_t max_new) {
    v1::ReplicaRequest r = Request("q" + std::to_string(handle), max_new);
    r.set_replica_id(replica);
    r.set_handle(handle);
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
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int32_t> tokens;
    bool done = false;
    EXPECT_TRUE(host->Submit(r,
                             [&](const TokenChunk& c) {
                               std::lock_guard<std::mutex> lock(mu);
                               tokens.insert(tokens.end(), c.token_ids.begin(), c.token_ids.end());
                               done = c.finish != sampling::FinishReason::kNone;
                               cv.notify_all();
                             })
                    .ok());
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, absl::ToChronoNanoseconds(kWait), [&] { return done; }));
    return tokens;
  }

  bool WaitHostsIdle(absl::Duration timeout) {
    for (const absl::Time until = absl::Now() + timeout; absl::Now() < until;) {
      if (host_->requests_in_flight() == 0 && r1_->requests_in_flight() == 0) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  ReplicaHost* r1_ = nullptr;
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

// A replica whose engine fails ends its submissions UNAVAILABLE, after the tokens they had.
TEST_F(ServeTest, FailedReplicaEndsSubmissionsUnavailable) {
  engine::EngineOptions options;
  options.num_threads = 1;
  auto failing = testing::LoadFailingHost("r2", testing::TinyModelDir(), /*fail_at=*/4, options);
  ASSERT_TRUE(failing.ok()) << failing.status();
  ASSERT_TRUE(registry_.Add(*std::move(failing)).ok());
  ServeStream stream(stub_.get());
  ASSERT_TRUE(stream.Submit(ServeRequest(1, "r2", 50)));
  ASSERT_TRUE(stream.WaitEnds(1));
  EXPECT_TRUE(stream.Finish().ok());
  const ServeStream::Submission got = stream.Get(1);
  ASSERT_TRUE(got.Ended());
  EXPECT_EQ(got.ends[0].error_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(got.ends[0].error_message(), HasSubstr("replica 'r2'"));
  EXPECT_LT(got.tokens.size(), 50u);
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

}  // namespace
}  // namespace rackserve::worker
