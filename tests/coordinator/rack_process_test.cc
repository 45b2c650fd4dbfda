// The rack as real processes on loopback: rackserve-coordinator and two rackserve-worker processes
// serving a tiny generated model, driven by a gRPC client. A batch goes through and the audit
// holds (tokens delivered == the workers' counts); then a worker is killed (SIGKILL) mid-batch and
// every request still completes with the same greedy output as the undisturbed run.
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

TEST(RackProcessTest, BatchAuditAndKilledWorker) {
  const std::string dir = ::testing::TempDir() + "/rackserve_rack_" + std::to_string(getpid());
  model::RandomModelOptions model_options;
  model_options.config = *model::PresetModelConfig("tiny");
  model_options.seed = 3;
  model_options.with_tokenizer = false;
  ASSERT_TRUE(model::WriteRandomModel(dir + "/model", model_options).ok());
  {
    std::ofstream topology(dir + "/rack.yaml");
    topology << "model: " << dir << "/model\nvms:\n  - {name: vm0, devices: 1}\n"
             << "  - {name: vm1, devices: 1}\nlayout: {tp: 1, pp: 1}\n";
  }
  Child coordinator({RACKSERVE_COORDINATOR_BINARY, "--topology", dir + "/rack.yaml", "--listen",
                     "127.0.0.1:0", "--heartbeat-timeout-s", "2", "--queue-limit", "256"},
                    dir + "/coordinator.log");
  const std::string address = coordinator.WaitListening();
  ASSERT_FALSE(address.empty()) << coordinator.Log();
  std::vector<std::unique_ptr<Child>> workers;
  for (const char* vm : {"vm0", "vm1"}) {
    workers.push_back(std::make_unique<Child>(
        std::vector<std::string>{RACKSERVE_WORKER_BINARY, "--coordinator", address, "--vm", vm,
                                 "--model", dir + "/model", "--devices", "1", "--threads", "1",
                                 "--kv-cache-mb", "64"},
        absl::StrCat(dir, "/", vm, ".log")));
  }
  auto client = v1::Rack::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  // Both replicas up (bounded wait).
  const absl::Time deadline = absl::Now() + kWait;
  bool ready = false;
  while (!ready && absl::Now() < deadline) {
    grpc::ClientContext context;
    v1::Topology topology;
    ready = client->GetTopology(&context, v1::TopologyRequest(), &topology).ok() &&
            topology.replicas_size() == 2 && topology.replicas(0).state() == "ready" &&
            topology.replicas(1).state() == "ready";
    if (!ready) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(ready) << coordinator.Log() << workers[0]->Log() << workers[1]->Log();

  constexpr int kRequests = 24;
  constexpr int64_t kMaxNew = 160;
  const std::vector<std::vector<int32_t>> undisturbed = RunBatch(*client, kRequests, kMaxNew);
  int64_t tokens = 0;
  for (const auto& t : undisturbed) {
    EXPECT_EQ(static_cast<int64_t>(t.size()), kMaxNew);
    tokens += static_cast<int64_t>(t.size());
  }
  // The audit: once the heartbeats catch up, the workers' counts equal the delivered tokens.
  v1::RackStats stats;
  for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
    stats = Stats(*client);
    if (stats.worker_generated_tokens_total() == tokens) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(stats.rack().generated_tokens_total(), tokens);
  EXPECT_EQ(stats.worker_generated_tokens_total(), tokens);

  // Again, killing vm0's worker once a tenth of the batch's tokens are out.
  std::atomic<bool> batch_done = false, killed_mid_batch = false;
  std::thread killer([&] {
    for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      if (Stats(*client).rack().generated_tokens_total() >= tokens + tokens / 10) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    workers[0]->Kill();
    killed_mid_batch = !batch_done;
  });
  const std::vector<std::vector<int32_t>> disturbed = RunBatch(*client, kRequests, kMaxNew);
  batch_done = true;
  killer.join();
  EXPECT_TRUE(killed_mid_batch);
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(disturbed[i], undisturbed[i]) << "request " << i;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace rackserve::coordinator
