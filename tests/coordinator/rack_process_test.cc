// The rack as real processes on loopback: rackserve-coordinator and two rackserve-worker processes
// serving a tiny generated model, driven by a gRPC client. A batch goes through and the audit
// holds (tokens delivered == the workers' counts); then a worker is killed (SIGKILL) mid-batch and
// every request still completes with the same greedy output as the undisturbed run; a worker
// paused for seconds (under the heartbeat timeout) keeps its link.
#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rackserve/v1/rack.grpc.pb.h"
#include "tests/coordinator/live_rack.h"

namespace rackserve::coordinator {
namespace {

constexpr absl::Duration kBatchDeadline = absl::Seconds(40);

v1::GenerateRequest Request(int i, int64_t max_new) {
  v1::GenerateRequest r;
  r.set_request_id(absl::StrCat("p", i));
  for (int k = 0; k < 4 + i % 5; ++k) r.add_prompt_token_ids(1 + (i * 13 + k * 7) % 500);
  r.mutable_sampling()->set_max_new_tokens(max_new);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

// Runs a batch; returns the token ids by request index (empty for a failed request).
std::vector<std::vector<int32_t>> RunBatch(v1::Rack::Stub& client, int n, int64_t max_new) {
  std::vector<std::vector<int32_t>> out(n);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kBatchDeadline));
  auto stream = client.SubmitBatch(&context);
  for (int i = 0; i < n; ++i) EXPECT_TRUE(stream->Write(Request(i, max_new)));
  stream->WritesDone();
  v1::Completion c;
  while (stream->Read(&c)) {
    EXPECT_EQ(c.error_code(), 0) << c.request_id() << ": " << c.error_message();
    out[std::stoi(c.request_id().substr(1))].assign(c.token_ids().begin(), c.token_ids().end());
  }
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return out;
}

// Fails workers over fast: silent 2 s is dead.
class RackProcessTest : public LiveRackTest {
 protected:
  std::vector<std::string> CoordinatorFlags() const override {
    return {"--heartbeat-timeout-s", "2", "--queue-limit", "256"};
  }
};

// Patient: silent 10 s is dead.
class PatientRackProcessTest : public LiveRackTest {
 protected:
  std::vector<std::string> CoordinatorFlags() const override {
    return {"--heartbeat-timeout-s", "10"};
  }
};

TEST_F(RackProcessTest, BatchAuditAndKilledWorker) {
  constexpr int kRequests = 24;
  constexpr int64_t kMaxNew = 160;
  const std::vector<std::vector<int32_t>> undisturbed = RunBatch(*client_, kRequests, kMaxNew);
  int64_t tokens = 0;
  for (const auto& t : undisturbed) {
    EXPECT_EQ(static_cast<int64_t>(t.size()), kMaxNew);
    tokens += static_cast<int64_t>(t.size());
  }
  // The audit: once the heartbeats catch up, the workers' counts equal the delivered tokens.
  v1::RackStats stats;
  for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
    stats = Stats();
    if (stats.worker_generated_tokens_total() == tokens) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(stats.rack().generated_tokens_total(), tokens);
  EXPECT_EQ(stats.worker_generated_tokens_total(), tokens);

  // Again, killing vm0's worker once every request has its first token (a batch request's other
  // tokens come with its end, and requests of one length end together: waiting for more than the
  // first tokens raced with the batch's end under load).
  std::atomic<bool> batch_done = false, killed_mid_batch = false;
  std::thread killer([&] {
    for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      if (Stats().rack().generated_tokens_total() >= tokens + kRequests) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    workers_[0]->Kill();
    killed_mid_batch = !batch_done;
  });
  const std::vector<std::vector<int32_t>> disturbed = RunBatch(*client_, kRequests, kMaxNew);
  batch_done = true;
  killer.join();
  EXPECT_TRUE(killed_mid_batch);
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(disturbed[i], undisturbed[i]) << "request " << i;
  }
}

// A worker that does not run for longer than its link's old fixed keepalive window (1 s ping +
// 2 s) but less than the heartbeat timeout — a loaded host, a debugger, a VM paused — keeps its
// link: nothing is declared dead or fails over, and the batch it holds completes.
TEST_F(PatientRackProcessTest, PausedWorkerKeepsItsLink) {
  constexpr int kRequests = 24;
  constexpr int64_t kMaxNew = 160;
  std::atomic<bool> batch_done = false, paused_mid_batch = false;
  std::thread pauser([&] {
    // Paused once every request has its first token (the rest come with each request's end),
    // so the link carries requests in flight.
    for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      if (Stats().rack().generated_tokens_total() >= kRequests) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    workers_[0]->Signal(SIGSTOP);
    paused_mid_batch = !batch_done;
    absl::SleepFor(absl::Seconds(4));
    workers_[0]->Signal(SIGCONT);
  });
  const std::vector<std::vector<int32_t>> out = RunBatch(*client_, kRequests, kMaxNew);
  batch_done = true;
  pauser.join();
  EXPECT_TRUE(paused_mid_batch);
  for (const std::vector<int32_t>& tokens : out) EXPECT_EQ(tokens.size(), kMaxNew);
  EXPECT_THAT(coordinator_->Log(), ::testing::Not(::testing::HasSubstr("unreachable")));
  EXPECT_THAT(coordinator_->Log(), ::testing::Not(::testing::HasSubstr("declared dead")));
}

}  // namespace
}  // namespace rackserve::coordinator
