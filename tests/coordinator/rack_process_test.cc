// The rack as real processes on loopback: rackserve-coordinator and two rackserve-worker processes
// serving a tiny generated model, driven by a gRPC client. A batch goes through and the audit
// holds (tokens delivered == the workers' counts); then a worker is killed (SIGKILL) mid-batch and
// every request still completes with the same greedy output as the undisturbed run; a worker
// paused for seconds (under the heartbeat timeout) keeps its link.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "rackserve/v1/rack.grpc.pb.h"
#include "runtime/model/model_generator.h"
#include "tests/support/child_process.h"

namespace rackserve::coordinator {
namespace {

using ::rackserve::testing::Child;

constexpr absl::Duration kWait = absl::Seconds(40);

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
  context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
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

v1::RackStats Stats(v1::Rack::Stub& client) {
  grpc::ClientContext context;
  v1::RackStats stats;
  EXPECT_TRUE(client.GetStats(&context, v1::StatsRequest(), &stats).ok());
  return stats;
}

// The coordinator and two one-GPU workers (vm0, vm1) serving a tiny generated model, both
// replicas ready; everything lives in a temporary directory removed at the end.
class TwoWorkerRack {
 public:
  explicit TwoWorkerRack(const std::string& heartbeat_timeout_s)
      : dir_(::testing::TempDir() + "/rackserve_rack_" + std::to_string(getpid())) {
    model::RandomModelOptions model_options;
    model_options.config = *model::PresetModelConfig("tiny");
    model_options.seed = 3;
    model_options.with_tokenizer = false;
    EXPECT_TRUE(model::WriteRandomModel(dir_ + "/model", model_options).ok());
    {
      std::ofstream topology(dir_ + "/rack.yaml");
      topology << "model: " << dir_ << "/model\nvms:\n  - {name: vm0, devices: 1}\n"
               << "  - {name: vm1, devices: 1}\nlayout: {tp: 1, pp: 1}\n";
    }
    coordinator_ = std::make_unique<Child>(
        std::vector<std::string>{RACKSERVE_COORDINATOR_BINARY, "--topology", dir_ + "/rack.yaml",
                                 "--listen", "127.0.0.1:0", "--heartbeat-timeout-s",
                                 heartbeat_timeout_s, "--queue-limit", "256"},
        dir_ + "/coordinator.log");
    const std::string address = coordinator_->WaitListening();
    if (address.empty()) return;
    for (const char* vm : {"vm0", "vm1"}) {
      workers_.push_back(std::make_unique<Child>(
          std::vector<std::string>{RACKSERVE_WORKER_BINARY, "--coordinator", address, "--vm", vm,
                                   "--model", dir_ + "/model", "--devices", "1", "--threads", "1",
                                   "--kv-cache-mb", "64"},
          absl::StrCat(dir_, "/", vm, ".log")));
    }
    client_ = v1::Rack::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    // Both replicas up (bounded wait).
    for (const absl::Time deadline = absl::Now() + kWait; !ready_ && absl::Now() < deadline;) {
      grpc::ClientContext context;
      v1::Topology topology;
      ready_ = client_->GetTopology(&context, v1::TopologyRequest(), &topology).ok() &&
               topology.replicas_size() == 2 && topology.replicas(0).state() == "ready" &&
               topology.replicas(1).state() == "ready";
      if (!ready_) absl::SleepFor(absl::Milliseconds(50));
    }
  }
  ~TwoWorkerRack() {
    workers_.clear();
    coordinator_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  bool ready() const { return ready_; }
  v1::Rack::Stub& client() { return *client_; }
  Child& worker(int i) { return *workers_[i]; }
  std::string Logs() const {
    std::string logs = coordinator_->Log();
    for (const auto& worker : workers_) logs += worker->Log();
    return logs;
  }
  std::string CoordinatorLog() const { return coordinator_->Log(); }

 private:
  const std::string dir_;
  std::unique_ptr<Child> coordinator_;
  std::vector<std::unique_ptr<Child>> workers_;
  std::unique_ptr<v1::Rack::Stub> client_;
  bool ready_ = false;
};

TEST(RackProcessTest, BatchAuditAndKilledWorker) {
  TwoWorkerRack rack("2");
  ASSERT_TRUE(rack.ready()) << rack.Logs();
  constexpr int kRequests = 24;
  constexpr int64_t kMaxNew = 160;
  const std::vector<std::vector<int32_t>> undisturbed = RunBatch(rack.client(), kRequests, kMaxNew);
  int64_t tokens = 0;
  for (const auto& t : undisturbed) {
    EXPECT_EQ(static_cast<int64_t>(t.size()), kMaxNew);
    tokens += static_cast<int64_t>(t.size());
  }
  // The audit: once the heartbeats catch up, the workers' counts equal the delivered tokens.
  v1::RackStats stats;
  for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
    stats = Stats(rack.client());
    if (stats.worker_generated_tokens_total() == tokens) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(stats.rack().generated_tokens_total(), tokens);
  EXPECT_EQ(stats.worker_generated_tokens_total(), tokens);

  // Again, killing vm0's worker once a tenth of the batch's tokens are out.
  std::atomic<bool> batch_done = false, killed_mid_batch = false;
  std::thread killer([&] {
    for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      if (Stats(rack.client()).rack().generated_tokens_total() >= tokens + tokens / 10) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    rack.worker(0).Kill();
    killed_mid_batch = !batch_done;
  });
  const std::vector<std::vector<int32_t>> disturbed = RunBatch(rack.client(), kRequests, kMaxNew);
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
TEST(RackProcessTest, PausedWorkerKeepsItsLink) {
  TwoWorkerRack rack("10");
  ASSERT_TRUE(rack.ready()) << rack.Logs();
  constexpr int kRequests = 24;
  constexpr int64_t kMaxNew = 160;
  std::atomic<bool> batch_done = false, paused_mid_batch = false;
  std::thread pauser([&] {
    // Paused once every request has its first token (the rest come with each request's end),
    // so the link carries requests in flight.
    for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      if (Stats(rack.client()).rack().generated_tokens_total() >= kRequests) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    rack.worker(0).Signal(SIGSTOP);
    paused_mid_batch = !batch_done;
    absl::SleepFor(absl::Seconds(4));
    rack.worker(0).Signal(SIGCONT);
  });
  const std::vector<std::vector<int32_t>> out = RunBatch(rack.client(), kRequests, kMaxNew);
  batch_done = true;
  pauser.join();
  EXPECT_TRUE(paused_mid_batch);
  for (const std::vector<int32_t>& tokens : out) EXPECT_EQ(tokens.size(), kMaxNew);
  EXPECT_THAT(rack.CoordinatorLog(), ::testing::Not(::testing::HasSubstr("unreachable")));
  EXPECT_THAT(rack.CoordinatorLog(), ::testing::Not(::testing::HasSubstr("declared dead")));
}

}  // namespace
}  // namespace rackserve::coordinator
