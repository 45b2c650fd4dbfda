// WorkerLink over real gRPC on loopback, against an in-process WorkerService that records what
// it reads (a test double of the worker: this tests the link's batching and end-of-stream logic).
// A backlog over 1 MiB goes out split into messages of at most 1 MiB (plus one request), in
// order, nothing lost or repeated; the worker's messages reach the receiver in order; the stream
// ending — the worker answering with an error, or Close() — reaches the receiver exactly once,
// with its status, and the link queues nothing after it.
#include "coordinator/worker_link.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);
constexpr size_t kMaxMessageBytes = size_t{1} << 20;  // WorkerLink's limit per ServeInbound

// Reads every ServeInbound once `Open()` was called (until then the link's writes back up on
// HTTP/2 flow control), answers each with one token per submission, and ends the stream with
// `end_with` after `end_after` messages when given.
class RecordingWorker final : public v1::WorkerService::Service {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    changed_.notify_all();
  }
  void EndAfter(size_t messages, grpc::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    end_after_ = messages;
    end_with_ = std::move(status);
  }
  // Waits until the submissions read add up to `count`; false on timeout.
  bool WaitSubmissions(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                             [&] { return submissions_ >= count; });
  }
  bool WaitStreamEnded() {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(kWait), [&] { return ended_; });
  }
  std::vector<v1::ServeInbound> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

  grpc::Status Serve(
      grpc::ServerContext* /*context*/,
      grpc::ServerReaderWriter<v1::ServeOutbound, v1::ServeInbound>* stream) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait(lock, [&] { return open_; });
    }
    grpc::Status status = grpc::Status::OK;
    v1::ServeInbound inbound;
    while (stream->Read(&inbound)) {
      v1::ServeOutbound outbound;
      for (const v1::ReplicaRequest& request : inbound.submit()) {
        outbound.add_handles(request.handle());
        outbound.add_counts(1);
        outbound.add_token_ids(static_cast<int32_t>(request.handle()));
      }
      bool end = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        messages_.push_back(inbound);
        submissions_ += static_cast<size_t>(inbound.submit_size());
        end = end_after_ > 0 && messages_.size() >= end_after_;
        if (end) status = end_with_;
        changed_.notify_all();
      }
      if (outbound.handles_size() > 0) stream->Write(outbound);
      if (end) break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    changed_.notify_all();
    return status;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool open_ = false;
  size_t end_after_ = 0;
  grpc::Status end_with_;
  std::vector<v1::ServeInbound> messages_;
  size_t submissions_ = 0;
  bool ended_ = false;
};

class RecordingReceiver final : public WorkerLink::Receiver {
 public:
  void OnOutbound(WorkerLink* /*link*/, const v1::ServeOutbound& outbound) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const uint64_t handle : outbound.handles()) handles_.push_back(handle);
    changed_.notify_all();
  }
  void OnLinkBroken(WorkerLink* /*link*/, const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++broken_;
    status_ = status;
    changed_.notify_all();
  }
  bool WaitHandles(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                             [&] { return handles_.size() >= count; });
  }
  bool WaitBroken() {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(kWait), [&] { return broken_ > 0; });
  }
  std::vector<uint64_t> handles() {
    std::lock_guard<std::mutex> lock(mu_);
    return handles_;
  }
  int broken() {
    std::lock_guard<std::mutex> lock(mu_);
    return broken_;
  }
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<uint64_t> handles_;
  int broken_ = 0;
  absl::Status status_;
};

// The worker's server on an ephemeral loopback port.
class WorkerLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&worker_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    worker_.Open();  // a Serve still waiting to read must not hold the shutdown
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  }

  RecordingWorker worker_;
  RecordingReceiver receiver_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// A request of about `prompt_tokens` * 2 bytes on the wire.
v1::ReplicaRequest Request(uint64_t handle, int prompt_tokens) {
  v1::ReplicaRequest request;
  request.set_replica_id("vm0/r0");
  request.set_request_id("q" + std::to_string(handle));
  request.set_handle(handle);
  for (int i = 0; i < prompt_tokens; ++i) request.add_prompt_token_ids(200 + i % 1000);
  request.mutable_sampling()->set_max_new_tokens(1);
  return request;
}

TEST_F(WorkerLinkTest, BacklogOverOneMebibyteGoesOutSplitInOrderWithCancels) {
  constexpr uint64_t kRequests = 800;  // ~4 KB each: ~3.2 MB queued while the worker reads nothing
  WorkerLink link("w", channel_, &receiver_);
  for (uint64_t h = 1; h <= kRequests; ++h) link.Submit(Request(h, 2000));
  link.Cancel(7);
  link.Cancel(9);
  worker_.Open();
  ASSERT_TRUE(worker_.WaitSubmissions(kRequests));

  const std::vector<v1::ServeInbound> messages = worker_.messages();
  std::vector<uint64_t> submitted, cancelled;
  size_t largest_request = 0;
  for (const v1::ServeInbound& message : messages) {
    for (const v1::ReplicaRequest& r : message.submit()) {
      submitted.push_back(r.handle());
      largest_request = std::max(largest_request, r.ByteSizeLong());
    }
    cancelled.insert(cancelled.end(), message.cancel().begin(), message.cancel().end());
  }
  std::vector<uint64_t> expected;
  for (uint64_t h = 1; h <= kRequests; ++h) expected.push_back(h);
  EXPECT_EQ(submitted, expected);  // every request once, in order
  EXPECT_THAT(cancelled, ::testing::ElementsAre(7, 9));
  EXPECT_GE(messages.size(), 3u);  // split: the backlog was ~3x the limit
  // At most the limit in requests, or one request over it (the first of a message always goes),
  // plus each field's tag and length (a few bytes per request) and the cancels.
  for (const v1::ServeInbound& message : messages) {
    EXPECT_LE(message.ByteSizeLong(), kMaxMessageBytes + largest_request +
                                          4 * static_cast<size_t>(message.submit_size()) + 32);
  }
  // The worker's answers reach the receiver in the order it wrote them.
  ASSERT_TRUE(receiver_.WaitHandles(kRequests));
  EXPECT_EQ(receiver_.handles(), expected);
  EXPECT_EQ(receiver_.broken(), 0);
}

TEST_F(WorkerLinkTest, WorkerEndingTheStreamReachesTheReceiverOnceWithItsStatus) {
  worker_.EndAfter(1, grpc::Status(grpc::StatusCode::INTERNAL, "the worker gave up"));
  worker_.Open();
  WorkerLink link("w", channel_, &receiver_);
  link.Submit(Request(1, 4));
  ASSERT_TRUE(receiver_.WaitBroken());
  EXPECT_EQ(receiver_.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(receiver_.status().message(), HasSubstr("the worker gave up"));
  EXPECT_EQ(receiver_.handles(), std::vector<uint64_t>{1});  // its last message came first
  // Nothing is queued any more; closing again changes nothing.
  link.Submit(Request(2, 4));
  link.Cancel(1);
  link.Close();
  EXPECT_EQ(receiver_.broken(), 1);
  EXPECT_EQ(worker_.messages().size(), 1u);
}

TEST_F(WorkerLinkTest, CloseEndsTheStreamOnceAsCancelled) {
  worker_.Open();
  {
    WorkerLink link("w", channel_, &receiver_);
    link.Submit(Request(1, 4));
    ASSERT_TRUE(receiver_.WaitHandles(1));
    link.Close();
    ASSERT_TRUE(receiver_.WaitBroken());
    EXPECT_EQ(receiver_.status().code(), absl::StatusCode::kCancelled);
    link.Close();
  }  // the destructor joins without a second OnLinkBroken
  EXPECT_EQ(receiver_.broken(), 1);
  EXPECT_TRUE(worker_.WaitStreamEnded());  // the worker saw its call end
}

}  // namespace
}  // namespace rackserve::coordinator
