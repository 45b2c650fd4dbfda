// ServeStream: the client side of one WorkerService.Serve stream, for tests. A reader thread files
// every token and end by handle, checking the columns' layout (a malformed message fails the
// calling test). The stub must outlive it; destroying it before Finish() cancels the call.
// Thread-safety: Send/Submit/Cancel from one thread at a time (gRPC allows one writer); the rest
// from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rackserve/v1/worker.grpc.pb.h"

namespace rackserve::worker::testing {

class ServeStream {
 public:
  // How long the Wait functions wait.
  static constexpr absl::Duration kWait = absl::Seconds(30);

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

}  // namespace rackserve::worker::testing
