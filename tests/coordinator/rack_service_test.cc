// The coordinator's services over real gRPC on 127.0.0.1, with fake workers: real WorkerService
// servers in this process that register, heartbeat, and generate deterministic tokens.
#include "coordinator/rack_service.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator_service.h"
#include "gmock/gmock.h"
#include "grpc/grpc.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kVocab = 1000;

// Token i of a request (resumed or not) depends only on its prompt and i.
int32_t ExpectedToken(const std::vector<int32_t>& prompt, int64_t i) {
  int64_t sum = 0;
  for (int32_t t : prompt) sum += t;
  return static_cast<int32_t>((sum * 31 + i * 7) % kVocab);
}

// The batch tests' request "bad" (an empty prompt): refused with a Completion naming the field.
void ExpectEmptyPromptRefused(const v1::Completion& completion) {
  EXPECT_EQ(completion.request_id(), "bad");
  EXPECT_EQ(completion.error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(completion.error_message(), HasSubstr("prompt_token_ids"));
}

class FakeWorker final : public v1::WorkerService::Service {
 public:
  FakeWorker(std::string vm, std::string coordinator) : vm_(std::move(vm)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    // Accept the coordinator's keepalive pings (every second, also on idle connections).
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    stub_ = v1::CoordinatorService::NewStub(
        grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()));
  }
  ~FakeWorker() override {
    StopHeartbeats();
    server_->Shutdown();
  }

  absl::Status Register() {
    v1::RegisterRequest request;
    request.set_protocol_version(kProtocolVersion);
    request.set_vm(vm_);
    request.set_address(absl::StrCat("127.0.0.1:", port_));
    request.add_devices()->set_index(0);
    request.set_model("/models/fake");
    v1::RegisterResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub_->Register(&context, request, &response);
    if (!status.ok())
      return absl::Status(absl::StatusCode(status.error_code()), status.error_message());
    worker_id_ = response.worker_id();
    for (const auto& a : response.assignments()) replicas_.push_back(a.replica_id());
    heartbeat_ = std::thread([this] { HeartbeatLoop(); });
    return absl::OkStatus();
  }
  void StopHeartbeats() {
    stop_ = true;
    if (heartbeat_.joinable()) heartbeat_.join();
  }

  // The data path: each submission runs on a thread of its own that sends one token per
  // token_delay_ms_; only this handler writes to the stream.
  grpc::Status Serve(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<v1::ServeOutbound, v1::ServeInbound>* stream) override {
    Session session;
    std::vector<std::thread> requests;
    std::thread reader([&] {
      v1::ServeInbound inbound;
      while (stream->Read(&inbound)) {
        absl::MutexLock lock(&session.mutex);
        for (uint64_t handle : inbound.cancel()) session.cancelled.insert(handle);
        for (const v1::ReplicaRequest& request : inbound.submit()) {
          {
            absl::MutexLock resume_lock(&mutex_);
            resume_sizes_.push_back(request.resume_token_ids_size());
            deliver_at_end_[request.request_id()] = request.deliver_at_end();
          }
          ++session.running;
          requests.emplace_back([this, &session, request] { Run(session, request); });
        }
      }
      absl::MutexLock lock(&session.mutex);
      session.reading = false;
    });
    bool broken = false;
    while (true) {
      v1::ServeOutbound out;
      bool done;
      {
        absl::MutexLock lock(&session.mutex);
        session.mutex.AwaitWithTimeout(
            absl::Condition(
                +[](Session* s) {
                  return s->broken || s->out.handles_size() > 0 || s->out.ends_size() > 0 ||
                         (!s->reading && s->running == 0);
                },
                &session),
            absl::Milliseconds(50));
        out.Swap(&session.out);
        broken = session.broken;
        done = !session.reading && session.running == 0;
      }
      // What was produced before the break still goes out (the client resumes after it).
      if (out.handles_size() > 0 || out.ends_size() > 0) stream->Write(out);
      if (broken || done) break;
      if (context->IsCancelled()) {
        absl::MutexLock lock(&session.mutex);
        session.broken = true;
      }
    }
    {
      absl::MutexLock lock(&session.mutex);
      session.broken = true;  // the request threads stop
    }
    if (broken) context->TryCancel();  // ends the reader's Read
    reader.join();
    for (std::thread& t : requests) t.join();
    if (broken) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake worker broke its stream");
    return grpc::Status::OK;
  }

  std::atomic<int64_t> break_after_{-1};     // tokens before the stream breaks (once); -1 never
  std::atomic<bool> answer_failure_{false};  // break_after_ ends the submission as a failed replica
  std::atomic<bool> malformed_{false};  // break_after_ sends a message whose columns do not add up
  std::atomic<int64_t> token_delay_ms_{0};
  std::atomic<bool> silent_{false};  // keeps the heartbeat stream open but sends nothing
  std::atomic<int64_t> generated_{0};
  std::atomic<int64_t> credit_{100000};
  std::atomic<int64_t> active_{0};        // submissions running
  std::atomic<bool> drain_acked_{false};  // the last HeartbeatAck asked to drain
  const std::string& worker_id() const { return worker_id_; }
  const std::vector<std::string>& replicas() const { return replicas_; }
  std::vector<int64_t> ResumeSizes() {
    absl::MutexLock lock(&mutex_);
    return resume_sizes_;
  }
  // ReplicaRequest.deliver_at_end of the last submission of each request_id.
  std::map<std::string, bool> DeliverAtEnd() {
    absl::MutexLock lock(&mutex_);
    return deliver_at_end_;
  }

 private:
  // One Serve stream.
  struct Session {
    absl::Mutex mutex;
    v1::ServeOutbound out ABSL_GUARDED_BY(mutex);
    std::set<uint64_t> cancelled ABSL_GUARDED_BY(mutex);
    int64_t running ABSL_GUARDED_BY(mutex) = 0;
    bool reading ABSL_GUARDED_BY(mutex) = true;
    bool broken ABSL_GUARDED_BY(mutex) = false;  // the stream ends now, UNAVAILABLE
  };

  void Run(Session& session, const v1::ReplicaRequest& request) {
    const std::vector<int32_t> prompt(request.prompt_token_ids().begin(),
                                      request.prompt_token_ids().end());
    const int64_t max_new = request.sampling().max_new_tokens();
    ++active_;
    v1::SubmissionEnd end;
    end.set_handle(request.handle());
    int64_t sent_here = 0;
    for (int64_t i = request.resume_token_ids_size(); i <= max_new; ++i) {
      absl::MutexLock lock(&session.mutex);
      if (session.broken) {
        end.set_handle(0);  // nobody to tell
        break;
      }
      if (session.cancelled.count(request.handle()) > 0) {
        end.set_finish_reason(v1::FINISH_REASON_CANCELLED);
        break;
      }
      if (i == max_new) {
        end.set_finish_reason(v1::FINISH_REASON_MAX_TOKENS);
        end.set_prompt_tokens(static_cast<int64_t>(prompt.size()));
        break;
      }
      if (break_after_ >= 0 && sent_here == break_after_) {
        break_after_ = -1;      // once
        if (answer_failure_) {  // the worker itself ends the submission: its replica failed
          end.set_error_code(static_cast<int32_t>(absl::StatusCode::kUnavailable));
          end.set_error_message("fake replica failed");
        } else if (malformed_) {  // a handle without its count: the coordinator drops the link
          session.out.add_handles(request.handle());
          session.out.add_token_ids(ExpectedToken(prompt, i));
          ++generated_;
          end.set_handle(0);
          session.mutex.Unlock();
          while (!session.broken) absl::SleepFor(absl::Milliseconds(5));  // until it hangs up
          session.mutex.Lock();
        } else {
          session.broken = true;
          end.set_handle(0);
        }
        break;
      }
      session.mutex.Unlock();
      absl::SleepFor(absl::Milliseconds(token_delay_ms_.load()));
      session.mutex.Lock();
      session.out.add_handles(request.handle());
      session.out.add_counts(1);
      session.out.add_token_ids(ExpectedToken(prompt, i));
      ++generated_;
      ++sent_here;
    }
    --active_;
    absl::MutexLock lock(&session.mutex);
    if (end.handle() != 0) *session.out.add_ends() = end;
    --session.running;
  }

  void HeartbeatLoop() {
    grpc::ClientContext context;
    auto stream = stub_->Heartbeats(&context);
    while (!stop_) {
      if (silent_) {
        absl::SleepFor(absl::Milliseconds(20));
        continue;
      }
      v1::Heartbeat beat;
      beat.set_worker_id(worker_id_);
      for (const std::string& id : replicas_) {
        v1::ReplicaCounters* c = beat.add_replicas();
        c->set_replica_id(id);
        c->set_generated_tokens(generated_);
        c->set_free_token_credit(credit_);
        c->set_running(active_);
        c->set_waiting(1);
        c->set_kv_blocks_used(5);
        c->set_kv_blocks_total(64);
        c->set_idle_seconds(0.5);
        c->set_read_at_unix_seconds(1234.5);
      }
      v1::HeartbeatAck ack;
      if (!stream->Write(beat) || !stream->Read(&ack)) break;
      drain_acked_ = ack.drain();
      absl::SleepFor(absl::Milliseconds(50));
    }
    context.TryCancel();
    stream->Finish().IgnoreError();
  }

  absl::Mutex mutex_;
  std::vector<int64_t> resume_sizes_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, bool> deliver_at_end_ ABSL_GUARDED_BY(mutex_);
  std::string vm_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::CoordinatorService::Stub> stub_;
  std::string worker_id_;
  std::vector<std::string> replicas_;
  std::atomic<bool> stop_{false};
  std::thread heartbeat_;
};

class RackServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(/*queue_limit=*/64); }

  void Start(int64_t queue_limit, int64_t max_batch_requests = 100000,
             std::unique_ptr<RoutingPolicy> policy = std::make_unique<LeastOutstandingPolicy>()) {
    auto topology = Topology::Parse(
        "model: /models/fake\nvms: [{name: vm0, devices: 1}, {name: vm1, devices: 1}]\n"
        "layout: {tp: 1, pp: 1}\n",
        "rack.yaml");
    ASSERT_TRUE(topology.ok()) << topology.status();
    topology_ = std::make_unique<Topology>(*topology);
    registry_ = std::make_unique<Registry>(topology_.get(), &RealClock(), absl::Seconds(1));
    dispatcher_ = std::make_unique<Dispatcher>(registry_.get(), std::move(policy), queue_limit);
    throughput_ = std::make_unique<RackThroughput>(PlacementsOf(*topology_));
    const RackContext rack{topology_.get(), registry_.get(), dispatcher_.get(), throughput_.get(),
                           &RealClock()};
    RackServiceOptions options;
    options.vocab_size = kVocab;
    options.max_context = 512;
    options.data_path.dispatch_timeout = absl::Seconds(5);
    options.max_batch_requests = max_batch_requests;
    auto service = RackServiceImpl::Create(options, rack);
    ASSERT_TRUE(service.ok()) << service.status();
    rack_service_ = std::move(*service);
    coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(
        rack, [this](const std::string& id) { rack_service_->OnWorkerDead(id); });
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(rack_service_.get());
    builder.RegisterService(coordinator_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
    client_ = v1::Rack::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    for (const char* vm : {"vm0", "vm1"}) {
      workers_.push_back(std::make_unique<FakeWorker>(vm, address_));
      ASSERT_TRUE(workers_.back()->Register().ok());
    }
    // Wait (bounded) until both replicas have reported credit.
    for (int i = 0; i < 100; ++i) {
      bool ready = true;
      for (const ReplicaStatus& r : registry_->Replicas())
        ready &= r.live && r.credit_budget > 0;
      if (ready) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  void TearDown() override {
    workers_.clear();
    rack_service_->Shutdown();
    server_->Shutdown();
  }

  struct Output {
    grpc::Status status;
    std::vector<v1::TokenChunk> chunks;
    std::map<std::string, std::string> trailers;
  };
  Output Generate(const v1::GenerateRequest& request) {
    Output out;
    grpc::ClientContext context;
    auto reader = client_->Generate(&context, request);
    v1::TokenChunk chunk;
    while (reader->Read(&chunk)) out.chunks.push_back(chunk);
    out.status = reader->Finish();
    for (const auto& [key, value] : context.GetServerTrailingMetadata()) {
      out.trailers[std::string(key.data(), key.size())] = std::string(value.data(), value.size());
    }
    return out;
  }

  v1::RackStats Stats() {
    grpc::ClientContext context;
    v1::RackStats stats;
    EXPECT_TRUE(client_->GetStats(&context, v1::StatsRequest(), &stats).ok());
    return stats;
  }

  // Polls `done` every 10 ms for at most `timeout`; its last answer.
  static bool Eventually(const std::function<bool()>& done,
                         absl::Duration timeout = absl::Seconds(3)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  }

  // Waits until the workers' reports caught up with what the coordinator received.
  v1::RackStats CaughtUpStats() {
    v1::RackStats stats;
    Eventually([&] {
      stats = Stats();
      return stats.audit().unreported_tokens() == 0;
    });
    return stats;
  }

  static v1::GenerateRequest Request(std::string id, std::vector<int32_t> prompt, int64_t max_new) {
    v1::GenerateRequest r;
    r.set_request_id(std::move(id));
    r.mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
    r.mutable_sampling()->set_max_new_tokens(max_new);
    return r;
  }

  // Every index exactly once, in order, with the deterministic tokens.
  static void ExpectComplete(const Output& out, const std::vector<int32_t>& prompt,
                             int64_t max_new) {
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    ASSERT_FALSE(out.chunks.empty());
    int64_t next = 0;
    for (const v1::TokenChunk& c : out.chunks) {
      EXPECT_EQ(c.first_index(), next);
      for (int32_t t : c.token_ids()) EXPECT_EQ(t, ExpectedToken(prompt, next++));
    }
    EXPECT_EQ(next, max_new);
    EXPECT_EQ(out.chunks.back().finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
    EXPECT_EQ(out.chunks.back().prompt_tokens(), static_cast<int64_t>(prompt.size()));
    EXPECT_GE(out.chunks.back().timings().total_seconds(),
              out.chunks.back().timings().ttft_seconds());
  }

  std::unique_ptr<Topology> topology_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<RackThroughput> throughput_;
  std::unique_ptr<RackServiceImpl> rack_service_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<v1::Rack::Stub> client_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
};

TEST_F(RackServiceTest, GenerateStreamsEveryToken) {
  const std::vector<int32_t> prompt = {1, 2, 3};
  ExpectComplete(Generate(Request("a", prompt, 20)), prompt, 20);
  // An empty request id is assigned one.
  ExpectComplete(Generate(Request("", prompt, 5)), prompt, 5);
}

TEST_F(RackServiceTest, ReplicaIdPinsTheRequestAndAnUnknownOneIsInvalid) {
  const std::vector<int32_t> prompt = {5, 6};
  for (auto& w : workers_) {
    for (const std::string& replica : w->replicas()) {
      v1::GenerateRequest request = Request(absl::StrCat("pin-", replica), prompt, 4);
      request.set_replica_id(replica);
      const int64_t before = w->ResumeSizes().size();
      ExpectComplete(Generate(request), prompt, 4);
      EXPECT_EQ(w->ResumeSizes().size(), before + 1) << replica << " did not run its canary";
    }
  }
  v1::GenerateRequest unknown = Request("pin-x", prompt, 4);
  unknown.set_replica_id("r99");
  const Output out = Generate(unknown);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(), HasSubstr("replica_id"));
}

TEST_F(RackServiceTest, BadInputIsInvalidArgumentNamingTheField) {
  struct Case {
    v1::GenerateRequest request;
    std::string field;
  };
  std::vector<Case> cases = {{Request("x", {}, 4), "prompt_token_ids"},
                             {Request("x", {1, kVocab}, 4), "prompt_token_ids[1]"},
                             {Request("x", {1}, 600), "sampling.max_new_tokens"},
                             {Request("x", {1}, -1), "sampling.max_new_tokens"}};
  v1::GenerateRequest top_p = Request("x", {1}, 4);
  top_p.mutable_sampling()->set_top_p(2);
  cases.push_back({top_p, "sampling.top_p"});
  v1::GenerateRequest temperature = Request("x", {1}, 4);
  temperature.mutable_sampling()->set_temperature(-1);
  cases.push_back({temperature, "sampling.temperature"});
  v1::GenerateRequest text;
  text.set_prompt_text("hello");
  cases.push_back({text, "prompt_text"});
  cases.push_back({Request("x", {-3}, 4), "prompt_token_ids[0]"});
  v1::GenerateRequest stop = Request("x", {1}, 4);
  stop.mutable_sampling()->add_stop_token_ids(kVocab + 5);
  cases.push_back({stop, "sampling.stop_token_ids"});
  for (const Case& c : cases) {
    const Output out = Generate(c.request);
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_THAT(out.status.error_message(), HasSubstr(c.field));
  }
}

TEST_F(RackServiceTest, DuplicateRequestIdIsInvalidArgument) {
  for (auto& w : workers_) w->token_delay_ms_ = 20;
  std::thread first([this] { ExpectComplete(Generate(Request("dup", {1}, 20)), {1}, 20); });
  ASSERT_TRUE(Eventually([this] { return Stats().requests_in_flight() == 1; }));
  const Output second = Generate(Request("dup", {2}, 4));
  first.join();
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(second.status.error_message(), HasSubstr("request_id: \"dup\""));
}

TEST_F(RackServiceTest, DuplicateIdInOneBatchIsRefusedAndTheFirstRunsOn) {
  for (auto& w : workers_) w->token_delay_ms_ = 30;  // the duplicate is refused first
  grpc::ClientContext context;
  auto stream = client_->SubmitBatch(&context);
  v1::GenerateRequest first = Request("twice", {3}, 4);
  first.set_notify_first_token(true);
  ASSERT_TRUE(stream->Write(first));
  ASSERT_TRUE(stream->Write(Request("twice", {4}, 4)));
  stream->WritesDone();
  int notes = 0, completed = 0, refused = 0;
  v1::Completion message;
  while (stream->Read(&message)) {
    EXPECT_EQ(message.request_id(), "twice");
    if (message.first_token()) {
      ++notes;
    } else if (message.error_code() != 0) {
      EXPECT_EQ(message.error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
      EXPECT_THAT(message.error_message(), HasSubstr("request_id: \"twice\""));
      ++refused;
    } else {
      EXPECT_EQ(message.token_ids_size(), 4);
      ++completed;
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(notes, 1);  // the refusal did not make the batch forget the first one
  EXPECT_EQ(completed, 1);
  EXPECT_EQ(refused, 1);
}

TEST_F(RackServiceTest, BrokenStreamFailsOverWithResumeTokens) {
  workers_[0]->break_after_ = 3;  // r0 (vm0) is first in order: it runs the request first
  const std::vector<int32_t> prompt = {4, 5, 6, 7};
  const Output out = Generate(Request("f", prompt, 12));
  ExpectComplete(out, prompt, 12);
  std::vector<int64_t> resumes;
  for (auto& w : workers_) {
    const std::vector<int64_t> sizes = w->ResumeSizes();
    resumes.insert(resumes.end(), sizes.begin(), sizes.end());
  }
  EXPECT_THAT(resumes, ::testing::UnorderedElementsAre(0, 3));
  // The audit: 3 tokens from vm0, then the other 9 from vm1, none discarded.
  const v1::RackStats stats = Stats();
  EXPECT_EQ(stats.audit().delivered_tokens(), 12);
  EXPECT_EQ(stats.audit().received_tokens(), 12);
  EXPECT_EQ(stats.audit().discarded_tokens(), 0);
  EXPECT_TRUE(stats.audit().exact());
  EXPECT_EQ(stats.audit().received_tokens(),
            stats.audit().worker_reported_tokens() + stats.audit().unreported_tokens());
}

TEST_F(RackServiceTest, FailedReplicaFailsOverWithoutKillingItsLiveWorker) {
  workers_[0]->break_after_ = 3;  // vm0's replica fails after 3 tokens and says so itself
  workers_[0]->answer_failure_ = true;
  const std::vector<int32_t> prompt = {4, 5, 6, 7};
  const Output out = Generate(Request("answered", prompt, 12));
  ExpectComplete(out, prompt, 12);
  EXPECT_TRUE(registry_->Alive(workers_[0]->worker_id()));  // the worker answered: not dead
  EXPECT_EQ(workers_[1]->ResumeSizes(), std::vector<int64_t>{3});
}

TEST_F(RackServiceTest, MalformedMessageDropsTheWorkerAndItsRequestMoves) {
  workers_[0]->break_after_ = 3;  // r0 (vm0) runs the request first; its 4th message is bad
  workers_[0]->malformed_ = true;
  const std::vector<int32_t> prompt = {8, 1, 5};
  const Output out = Generate(Request("bad-columns", prompt, 10));
  ExpectComplete(out, prompt, 10);
  EXPECT_FALSE(registry_->Alive(workers_[0]->worker_id()));  // a worker that garbles is dropped
  // vm1 resumes after what vm0 delivered before the bad message: the good tokens that came in
  // earlier messages (a bad message is refused whole, with the good tokens it carries).
  const std::vector<int64_t> resumes = workers_[1]->ResumeSizes();
  ASSERT_EQ(resumes.size(), 1u);
  EXPECT_GE(resumes[0], 0);
  EXPECT_LE(resumes[0], 3);
  // The audit: vm0's 4 tokens were received; those not delivered were discarded.
  const v1::RackStats stats = Stats();
  EXPECT_EQ(stats.audit().delivered_tokens(), 10);
  EXPECT_EQ(stats.audit().discarded_tokens(), 4 - resumes[0]);
}

TEST_F(RackServiceTest, SilentWorkerIsDeclaredDeadAndItsRequestMoves) {
  for (auto& w : workers_) w->token_delay_ms_ = 40;
  const std::vector<int32_t> prompt = {9};
  std::thread stopper([this] {
    absl::SleepFor(absl::Milliseconds(300));
    for (auto& w : workers_) {
      if (!w->ResumeSizes().empty()) {
        w->silent_ = true;  // dead after the 1 s heartbeat timeout, mid-request
        w->token_delay_ms_ = 400;
      }
    }
  });
  const Output out = Generate(Request("s", prompt, 40));
  stopper.join();
  ExpectComplete(out, prompt, 40);
  int64_t submits = 0;
  for (auto& w : workers_) submits += static_cast<int64_t>(w->ResumeSizes().size());
  EXPECT_EQ(submits, 2);
  // The silent worker's tokens sent after its last heartbeat are never reported: the audit
  // names them and still adds up.
  const v1::RackStats stats = Stats();
  EXPECT_EQ(stats.audit().delivered_tokens(), 40);
  EXPECT_EQ(stats.audit().discarded_tokens(), 0);
  EXPECT_GT(stats.audit().unreported_tokens(), 0);
  EXPECT_TRUE(stats.audit().exact());
}

TEST_F(RackServiceTest, CancelEndsTheStreamWithCancelled) {
  for (auto& w : workers_) w->token_delay_ms_ = 20;
  std::thread canceller([this] {
    absl::SleepFor(absl::Milliseconds(200));
    grpc::ClientContext context;
    v1::CancelRequest request;
    request.set_request_id("c");
    v1::CancelResponse response;
    EXPECT_TRUE(client_->Cancel(&context, request, &response).ok());
  });
  const Output out = Generate(Request("c", {1}, 400));
  canceller.join();
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.chunks.back().finish_reason(), v1::FINISH_REASON_CANCELLED);
  grpc::ClientContext context;
  v1::CancelRequest request;
  request.set_request_id("c");
  v1::CancelResponse response;
  const grpc::Status gone = client_->Cancel(&context, request, &response);
  EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(gone.error_message(), HasSubstr("\"c\""));
}

// Hundreds of requests of one stream in flight at once, completions written while the client is
// still sending: every one arrives. (The plucker race this guards against — request threads
// asking the call whether its client was gone — showed only with the whole rack under load:
// tests/client/deploy_rack_test.sh runs a 2,000-sample bench on simulated GPUs for it.)
TEST_F(RackServiceTest, SubmitBatchWithHundredsInFlightDeliversEveryCompletion) {
  grpc::ClientContext context;
  auto stream = client_->SubmitBatch(&context);
  constexpr int kRequests = 600;
  std::thread writer([&] {
    for (int i = 0; i < kRequests; ++i) {
      if (!stream->Write(Request(absl::StrCat("h", i), {i % 97 + 1, 3}, 100))) return;
    }
    stream->WritesDone();
  });
  v1::Completion completion;
  std::set<std::string> done;
  while (stream->Read(&completion)) {
    EXPECT_EQ(completion.error_code(), 0) << completion.error_message();
    EXPECT_EQ(completion.token_ids_size(), 100);
    done.insert(completion.request_id());
  }
  writer.join();
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(done.size(), static_cast<size_t>(kRequests));
}

TEST_F(RackServiceTest, SubmitBatchCompletesEveryRequestAndTheAuditAddsUp) {
  grpc::ClientContext context;
  auto stream = client_->SubmitBatch(&context);
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(stream->Write(Request(absl::StrCat("b", i), {i + 1, 2}, 8 + i % 5)));
  }
  ASSERT_TRUE(stream->Write(Request("bad", {}, 4)));
  stream->WritesDone();
  v1::Completion completion;
  int ok = 0, failed = 0;
  int64_t tokens = 0;
  while (stream->Read(&completion)) {
    if (completion.error_code() != 0) {
      ExpectEmptyPromptRefused(completion);
      ++failed;
      continue;
    }
    const int i = std::stoi(completion.request_id().substr(1));
    ASSERT_EQ(completion.token_ids_size(), 8 + i % 5);
    for (int k = 0; k < completion.token_ids_size(); ++k) {
      EXPECT_EQ(completion.token_ids(k), ExpectedToken({i + 1, 2}, k));
    }
    EXPECT_EQ(completion.finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
    tokens += completion.token_ids_size();
    ++ok;
  }
  ASSERT_TRUE(stream->Finish().ok());
  const auto& trailers = context.GetServerTrailingMetadata();
  auto job_tokens = trailers.find("batch-generated-tokens");
  auto job_rate = trailers.find("batch-tokens-per-second");
  ASSERT_NE(job_tokens, trailers.end());
  ASSERT_NE(job_rate, trailers.end());
  EXPECT_EQ(std::string(job_tokens->second.data(), job_tokens->second.size()),
            absl::StrCat(tokens));
  EXPECT_GT(std::stod(std::string(job_rate->second.data(), job_rate->second.size())), 0);
  EXPECT_EQ(ok, kRequests);
  EXPECT_EQ(failed, 1);

  // The workers' reports catch up within a few heartbeats; then the audit holds exactly.
  v1::RackStats stats;
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext stats_context;
    stats.Clear();
    ASSERT_TRUE(client_->GetStats(&stats_context, v1::StatsRequest(), &stats).ok());
    if (stats.worker_generated_tokens_total() == tokens) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(stats.rack().generated_tokens_total(), tokens);
  EXPECT_EQ(stats.worker_generated_tokens_total(), tokens);
  EXPECT_EQ(stats.audit().delivered_tokens(), tokens);
  EXPECT_EQ(stats.audit().received_tokens(), tokens);
  EXPECT_EQ(stats.audit().worker_reported_tokens(), tokens);
  EXPECT_EQ(stats.audit().discarded_tokens(), 0);
  EXPECT_EQ(stats.audit().unreported_tokens(), 0);
  EXPECT_TRUE(stats.audit().exact());
  EXPECT_EQ(stats.requests_completed(), kRequests);
  EXPECT_EQ(stats.requests_in_flight(), 0);
  ASSERT_EQ(stats.rack().windows_size(), 3);
  EXPECT_GT(stats.rack().windows(2).generated_tokens_per_second(), 0);
  EXPECT_EQ(stats.replicas_size(), 2);
  EXPECT_EQ(stats.devices_size(), 2);
}

// SubmitBatchPacked: many requests per message in, completions packed out; the outcome is
// SubmitBatch's — every request completes once with its tokens, a bad one is refused naming the
// field, the job's figure comes in the trailers — in fewer messages than completions.
TEST_F(RackServiceTest, SubmitBatchPackedRunsManyRequestsPerMessage) {
  grpc::ClientContext context;
  auto stream = client_->SubmitBatchPacked(&context);
  constexpr int kRequests = 300;
  std::thread writer([&] {
    v1::GenerateRequestBatch batch;
    for (int i = 0; i < kRequests; ++i) {
      *batch.add_requests() = Request(absl::StrCat("p", i), {i % 97 + 1, 2}, 6 + i % 5);
      if (batch.requests_size() == 100 && !stream->Write(batch)) return;
      if (batch.requests_size() == 100) batch.Clear();
    }
    *batch.add_requests() = Request("bad", {}, 4);
    if (stream->Write(batch)) stream->WritesDone();
  });
  v1::CompletionBatch message;
  int messages = 0, failed = 0;
  std::set<std::string> done;
  int64_t tokens = 0;
  while (stream->Read(&message)) {
    ++messages;
    for (const v1::Completion& completion : message.completions()) {
      if (completion.error_code() != 0) {
        ExpectEmptyPromptRefused(completion);
        ++failed;
        continue;
      }
      EXPECT_TRUE(done.insert(completion.request_id()).second) << completion.request_id();
      const int i = std::stoi(completion.request_id().substr(1));
      ASSERT_EQ(completion.token_ids_size(), 6 + i % 5);
      for (int k = 0; k < completion.token_ids_size(); ++k) {
        EXPECT_EQ(completion.token_ids(k), ExpectedToken({i % 97 + 1, 2}, k));
      }
      tokens += completion.token_ids_size();
    }
  }
  writer.join();
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(done.size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(failed, 1);
  EXPECT_LT(messages, kRequests + 1);
  const auto& trailers = context.GetServerTrailingMetadata();
  auto job_tokens = trailers.find("batch-generated-tokens");
  ASSERT_NE(job_tokens, trailers.end());
  EXPECT_EQ(std::string(job_tokens->second.data(), job_tokens->second.size()),
            absl::StrCat(tokens));
}

TEST_F(RackServiceTest, SubmitBatchSendsFirstTokenNotesBeforeTheirCompletions) {
  for (auto& w : workers_) w->token_delay_ms_ = 10;
  grpc::ClientContext context;
  auto stream = client_->SubmitBatch(&context);
  constexpr int kRequests = 6;
  for (int i = 0; i < kRequests; ++i) {
    v1::GenerateRequest request = Request(absl::StrCat("n", i), {i + 3}, 5);
    request.set_notify_first_token(i % 2 == 0);  // the odd ones get no note
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  std::set<int> noted, completed;
  v1::Completion message;
  while (stream->Read(&message)) {
    const int i = std::stoi(message.request_id().substr(1));
    if (message.first_token()) {
      EXPECT_EQ(i % 2, 0) << message.request_id();
      EXPECT_EQ(completed.count(i), 0u) << "the note of " << message.request_id() << " came last";
      ASSERT_EQ(message.token_ids_size(), 1);
      EXPECT_EQ(message.token_ids(0), ExpectedToken({i + 3}, 0));
      EXPECT_GT(message.timings().ttft_seconds(), 0);
      EXPECT_TRUE(noted.insert(i).second) << "two notes for " << message.request_id();
      continue;
    }
    EXPECT_EQ(message.error_code(), 0) << message.error_message();
    EXPECT_EQ(message.token_ids_size(), 5);
    EXPECT_GE(message.timings().ttft_seconds(), 0.01);
    completed.insert(i);
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(noted, (std::set<int>{0, 2, 4}));
  EXPECT_EQ(completed.size(), static_cast<size_t>(kRequests));
}

// Generate streams tokens, so its workers stream them; a batch answers with completions, so its
// workers may hold the tokens until the end (deliver_at_end).
TEST_F(RackServiceTest, OnlyBatchRequestsLetTheWorkersDeliverAtTheEnd) {
  const std::vector<int32_t> prompt = {4, 5};
  ExpectComplete(Generate(Request("streamed", prompt, 3)), prompt, 3);
  grpc::ClientContext context;
  auto stream = client_->SubmitBatch(&context);
  ASSERT_TRUE(stream->Write(Request("batched", prompt, 3)));
  stream->WritesDone();
  v1::Completion completion;
  while (stream->Read(&completion)) EXPECT_EQ(completion.error_code(), 0);
  ASSERT_TRUE(stream->Finish().ok());
  std::map<std::string, bool> seen;
  for (auto& w : workers_) seen.merge(w->DeliverAtEnd());
  EXPECT_EQ(seen, (std::map<std::string, bool>{{"batched", true}, {"streamed", false}}));
}

TEST_F(RackServiceTest, TopologyShowsWorkerStates) {
  workers_[1]->silent_ = true;
  absl::SleepFor(absl::Milliseconds(1300));
  grpc::ClientContext context;
  v1::Topology topology;
  ASSERT_TRUE(client_->GetTopology(&context, v1::TopologyRequest(), &topology).ok());
  EXPECT_EQ(topology.model(), "/models/fake");
  ASSERT_EQ(topology.vms_size(), 2);
  EXPECT_EQ(topology.vms(0).state(), "ready");
  EXPECT_EQ(topology.vms(1).state(), "dead");
  ASSERT_EQ(topology.replicas_size(), 2);
  EXPECT_EQ(topology.replicas(1).state(), "down");
}

TEST_F(RackServiceTest, StaleStreamOfADeadWorkerDoesNotKillItsSuccessor) {
  FakeWorker& old_worker = *workers_[0];
  old_worker.token_delay_ms_ = 40;
  old_worker.break_after_ = 10;  // ~400 ms in: UNAVAILABLE after vm0 has a new worker
  old_worker.silent_ = true;     // no heartbeat stream end, no timeout yet
  const std::vector<int32_t> prompt = {3, 1};
  Output out;
  std::thread client([&] { out = Generate(Request("stale", prompt, 20)); });
  ASSERT_TRUE(Eventually([&] { return !old_worker.ResumeSizes().empty(); }));
  // The registry declared the old worker dead and vm0's restarted worker registered.
  registry_->MarkDead(old_worker.worker_id());
  workers_.push_back(std::make_unique<FakeWorker>("vm0", address_));
  ASSERT_TRUE(workers_.back()->Register().ok());
  const std::string successor = workers_.back()->worker_id();
  client.join();
  ExpectComplete(out, prompt, 20);
  EXPECT_TRUE(registry_->Alive(successor));
  EXPECT_EQ(registry_->WorkerOf("vm0"), successor);
}

TEST_F(RackServiceTest, StatsCarryLoadAndStateFromHeartbeats) {
  for (auto& w : workers_) w->token_delay_ms_ = 30;
  std::thread client([this] { ExpectComplete(Generate(Request("load", {1}, 20)), {1}, 20); });
  v1::RackStats stats;
  ASSERT_TRUE(Eventually([&] {
    stats = Stats();
    return stats.vms_size() == 2 && stats.vms(0).running() == 1;
  }));
  client.join();
  ASSERT_EQ(stats.replicas_size(), 2);
  EXPECT_EQ(stats.vms(0).name(), "vm0");
  EXPECT_EQ(stats.vms(0).waiting(), 1);
  EXPECT_EQ(stats.vms(0).kv_blocks_used(), 5);
  EXPECT_EQ(stats.vms(0).kv_blocks_total(), 64);
  EXPECT_EQ(stats.vms(0).state(), "ready");
  EXPECT_EQ(stats.replicas(0).running(), 1);
  EXPECT_EQ(stats.replicas(0).kv_blocks_total(), 64);
  EXPECT_EQ(stats.replicas(0).state(), "ready");
  EXPECT_DOUBLE_EQ(stats.replicas(0).idle_seconds(), 0.5);
  EXPECT_DOUBLE_EQ(stats.replicas(0).counters_read_at_unix_seconds(), 1234.5);
  EXPECT_DOUBLE_EQ(stats.vms(0).idle_seconds(), 0.5);
  EXPECT_EQ(stats.replicas(1).running(), 0);
  ASSERT_EQ(stats.vms(1).throughput().windows_size(), 3);

  workers_[1]->silent_ = true;
  ASSERT_TRUE(Eventually([&] {
    stats = Stats();
    return stats.vms(1).state() == "dead";
  }));
  EXPECT_EQ(stats.replicas(1).state(), "down");
  EXPECT_EQ(stats.vms(1).kv_blocks_total(), 0);  // no live worker: no load
}

TEST_F(RackServiceTest, ClientGoneWhileQueuedLeavesTheQueue) {
  for (auto& w : workers_) w->credit_ = 0;
  ASSERT_TRUE(Eventually([this] {
    for (const ReplicaStatus& r : registry_->Replicas()) {
      if (r.credit_budget != 0) return false;
    }
    return true;
  }));
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::TokenChunk>> reader =
      client_->Generate(&context, Request("gone", {1}, 4));
  ASSERT_TRUE(Eventually([this] { return dispatcher_->queued() == 1; }));
  context.TryCancel();
  EXPECT_TRUE(Eventually([this] { return dispatcher_->queued() == 0; }, absl::Seconds(1)));
  EXPECT_TRUE(Eventually([this] { return Stats().requests_in_flight() == 0; }, absl::Seconds(1)));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(RackServiceTest, SubmitBatchClientGoneCancelsItsQueuedAndRunningRequests) {
  for (auto& w : workers_) {
    w->token_delay_ms_ = 50;
    w->credit_ = 150;  // a request of 2 + 100 tokens runs, one of 2 + 300 waits
  }
  ASSERT_TRUE(Eventually([this] {
    for (const ReplicaStatus& r : registry_->Replicas()) {
      if (r.credit_budget != 150) return false;
    }
    return true;
  }));
  grpc::ClientContext context;
  auto stream = client_->SubmitBatch(&context);
  ASSERT_TRUE(stream->Write(Request("run0", {1, 2}, 100)));
  ASSERT_TRUE(stream->Write(Request("run1", {3, 4}, 100)));
  ASSERT_TRUE(Eventually([this] { return workers_[0]->active_ + workers_[1]->active_ == 2; }));
  // The batch's reader waits with wait0 for credit; wait1 is not read yet.
  ASSERT_TRUE(stream->Write(Request("wait0", {5, 6}, 300)));
  ASSERT_TRUE(stream->Write(Request("wait1", {7, 8}, 300)));
  ASSERT_TRUE(Eventually([this] { return dispatcher_->queued() == 1; }));
  context.TryCancel();
  EXPECT_TRUE(Eventually([this] {
    const v1::RackStats stats = Stats();
    return stats.requests_in_flight() == 0 && stats.requests_queued() == 0;
  }));
  EXPECT_TRUE(Eventually([this] { return workers_[0]->active_ + workers_[1]->active_ == 0; }));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(RackServiceTest, DrainVmStopsRoutingThereAndResumeUndoesIt) {
  auto drain = [this](const std::string& vm, bool resume, v1::DrainVmResponse* response) {
    grpc::ClientContext context;
    v1::DrainVmRequest request;
    request.set_vm(vm);
    request.set_resume(resume);
    return client_->DrainVm(&context, request, response);
  };
  v1::DrainVmResponse response;
  grpc::Status status = drain("", false, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("vm: empty"));
  status = drain("vm9", false, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("\"vm9\""));

  // A request runs on vm0 (first in order); draining vm0 leaves it running there.
  workers_[0]->token_delay_ms_ = 20;
  std::thread running([this] { ExpectComplete(Generate(Request("d0", {1}, 30)), {1}, 30); });
  ASSERT_TRUE(Eventually([this] { return workers_[0]->active_ == 1; }));
  ASSERT_TRUE(drain("vm0", false, &response).ok());
  EXPECT_EQ(response.requests_left(), 1);
  EXPECT_EQ(response.state(), "draining");
  EXPECT_TRUE(Eventually([this] { return workers_[0]->drain_acked_.load(); }));
  grpc::ClientContext context;
  v1::Topology topology;
  ASSERT_TRUE(client_->GetTopology(&context, v1::TopologyRequest(), &topology).ok());
  EXPECT_EQ(topology.vms(0).state(), "draining");
  EXPECT_EQ(topology.replicas(0).state(), "draining");
  // New requests go to vm1 only.
  ExpectComplete(Generate(Request("d1", {2}, 4)), {2}, 4);
  EXPECT_EQ(workers_[0]->ResumeSizes().size(), 1u);
  EXPECT_EQ(workers_[1]->ResumeSizes().size(), 1u);
  running.join();

  ASSERT_TRUE(drain("vm0", true, &response).ok());
  EXPECT_EQ(response.requests_left(), 0);
  EXPECT_EQ(response.state(), "ready");
  EXPECT_TRUE(Eventually([this] { return !workers_[0]->drain_acked_.load(); }));
  ExpectComplete(Generate(Request("d2", {3}, 4)), {3}, 4);
  EXPECT_EQ(workers_[0]->ResumeSizes().size(), 2u);  // vm0 takes work again
}

// Routes like LeastOutstandingPolicy; once armed, the worker of the first replica it picks dies
// right then, before the request's attempt is published (the registry learns of it, the flight
// scan of OnWorkerDead cannot see the attempt yet).
class DeathAtPlacementPolicy : public RoutingPolicy {
 public:
  explicit DeathAtPlacementPolicy(std::function<void(const std::string&)> kill)
      : kill_(std::move(kill)) {}
  std::optional<std::string> Pick(const std::vector<RouteCandidate>& candidates,
                                  std::span<const int32_t> prompt, int64_t cost) override {
    std::optional<std::string> picked = inner_.Pick(candidates, prompt, cost);
    if (picked.has_value() && armed_.exchange(false)) kill_(*picked);
    return picked;
  }
  std::atomic<bool> armed_{false};

 private:
  LeastOutstandingPolicy inner_;
  std::function<void(const std::string&)> kill_;
};

class DeathAtPlacementTest : public RackServiceTest {
 protected:
  void SetUp() override {
    auto policy = std::make_unique<DeathAtPlacementPolicy>([this](const std::string& replica) {
      for (const ReplicaStatus& r : registry_->Replicas()) {
        if (r.id == replica) registry_->MarkDead(r.leader_worker_id);
      }
    });
    policy_ = policy.get();
    Start(/*queue_limit=*/64, /*max_batch_requests=*/100000, std::move(policy));
  }
  DeathAtPlacementPolicy* policy_ = nullptr;
};

TEST_F(DeathAtPlacementTest, WorkerDeadBeforeSubmissionStillFailsOver) {
  policy_->armed_ = true;
  const std::vector<int32_t> prompt = {8, 8};
  ExpectComplete(Generate(Request("early", prompt, 6)), prompt, 6);
  EXPECT_FALSE(policy_->armed_);
  // vm0's replica was picked and its worker died at once: vm1 ran the whole request.
  EXPECT_THAT(workers_[1]->ResumeSizes(), ::testing::ElementsAre(0));
  EXPECT_FALSE(registry_->Alive(workers_[0]->worker_id()));
}

class SmallBatchTest : public RackServiceTest {
 protected:
  void SetUp() override { Start(/*queue_limit=*/64, /*max_batch_requests=*/2); }
};

TEST_F(SmallBatchTest, OversizedBatchIsInvalidArgumentNamingBatch) {
  grpc::ClientContext context;
  auto stream = client_->SubmitBatch(&context);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(stream->Write(Request(absl::StrCat("o", i), {1}, 2)));
  stream->WritesDone();
  v1::Completion completion;
  std::map<std::string, v1::Completion> by_id;
  while (stream->Read(&completion)) by_id[completion.request_id()] = completion;
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id["o0"].error_code(), 0);
  EXPECT_EQ(by_id["o1"].error_code(), 0);
  EXPECT_EQ(by_id["o2"].error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(by_id["o2"].error_message(), HasSubstr("batch:"));
}

class NoQueueTest : public RackServiceTest {
 protected:
  void SetUp() override { Start(/*queue_limit=*/0); }
};

TEST_F(NoQueueTest, QueueLimitZeroPlacesWhatFitsAndRefusesTheRest) {
  ExpectComplete(Generate(Request("fits", {1}, 4)), {1}, 4);
  for (auto& w : workers_) w->credit_ = 3;  // less than any request costs
  ASSERT_TRUE(Eventually([this] {
    for (const ReplicaStatus& r : registry_->Replicas()) {
      if (r.credit_budget != 3) return false;
    }
    return true;
  }));
  const Output refused = Generate(Request("refused", {1}, 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("retry after"));
  EXPECT_EQ(refused.trailers.count("retry-after-ms"), 1u);
}

class OverloadTest : public RackServiceTest {
 protected:
  void SetUp() override { Start(/*queue_limit=*/1); }
};

TEST_F(OverloadTest, PastTheQueueIsResourceExhaustedWithRetryAfter) {
  for (auto& w : workers_) {
    w->credit_ = 0;  // no credit: everything queues
  }
  absl::SleepFor(absl::Milliseconds(200));  // the zero credit is reported
  std::thread waiter([this] {
    const Output queued = Generate(Request("q", {1}, 4));
    ExpectComplete(queued, {1}, 4);  // admitted once credit comes back
  });
  while (dispatcher_->queued() < 1) absl::SleepFor(absl::Milliseconds(5));
  const Output rejected = Generate(Request("r", {1}, 4));
  EXPECT_EQ(rejected.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(rejected.status.error_message(), HasSubstr("retry after"));
  for (auto& w : workers_) w->credit_ = 100000;
  waiter.join();
  auto hint = rejected.trailers.find("retry-after-ms");
  ASSERT_NE(hint, rejected.trailers.end());
  EXPECT_GT(std::stoi(hint->second), 0);
}

}  // namespace
}  // namespace rackserve::coordinator
