// LiveRackTest: a test fixture running a rack as real processes on loopback — rackserve-coordinator
// (gRPC and HTTP on free ports) and one rackserve-worker per VM serving a tiny generated model —
// plus steady client traffic on demand (threads submitting batches with ignore_eos until
// stopped). For the process tests (failover, paused workers) and the observability tests
// (Prometheus scrape, dashboard in Chromium). The test binary defines
// RACKSERVE_COORDINATOR_BINARY and RACKSERVE_WORKER_BINARY.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "rackserve/v1/rack.grpc.pb.h"
#include "runtime/model/model_generator.h"
#include "tests/support/child_process.h"

namespace rackserve::coordinator {

using ::rackserve::testing::Child;

class LiveRackTest : public ::testing::Test {
 protected:
  static constexpr int kVms = 2;
  static constexpr absl::Duration kWait = absl::Seconds(40);

  // Flags the coordinator gets besides the topology and its addresses (a fixture's own).
  virtual std::vector<std::string> CoordinatorFlags() const { return {}; }

  void SetUp() override {
    dir_ = ::testing::TempDir() + "/rackserve_live_rack_" + std::to_string(getpid());
    model::RandomModelOptions model_options;
    model_options.config = *model::PresetModelConfig("tiny");
    model_options.seed = 5;
    model_options.with_tokenizer = false;
    ASSERT_TRUE(model::WriteRandomModel(dir_ + "/model", model_options).ok());
    {
      std::ofstream topology(dir_ + "/rack.yaml");
      topology << "model: " << dir_ << "/model\nvms:\n";
      for (int v = 0; v < kVms; ++v) topology << "  - {name: vm" << v << ", devices: 1}\n";
      topology << "layout: {tp: 1, pp: 1}\n";
    }
    std::vector<std::string> command = {RACKSERVE_COORDINATOR_BINARY,
                                        "--topology",
                                        dir_ + "/rack.yaml",
                                        "--listen",
                                        "127.0.0.1:0",
                                        "--http-listen",
                                        "127.0.0.1:0"};
    for (const std::string& flag : CoordinatorFlags()) command.push_back(flag);
    coordinator_ = std::make_unique<Child>(command, dir_ + "/coordinator.log");
    grpc_address_ = coordinator_->WaitListening();
    ASSERT_FALSE(grpc_address_.empty()) << coordinator_->Log();
    http_address_ = coordinator_->WaitForLine("http on ");
    ASSERT_FALSE(http_address_.empty()) << coordinator_->Log();
    for (int v = 0; v < kVms; ++v) {
      const std::string vm = absl::StrCat("vm", v);
      workers_.push_back(std::make_unique<Child>(
          std::vector<std::string>{RACKSERVE_WORKER_BINARY, "--coordinator", grpc_address_, "--vm",
                                   vm, "--model", dir_ + "/model", "--devices", "1", "--threads",
                                   "1", "--kv-cache-mb", "64"},
          absl::StrCat(dir_, "/", vm, ".log")));
    }
    client_ =
        v1::Rack::NewStub(grpc::CreateChannel(grpc_address_, grpc::InsecureChannelCredentials()));
    bool ready = false;
    for (const absl::Time deadline = absl::Now() + kWait; !ready && absl::Now() < deadline;) {
      grpc::ClientContext context;
      v1::Topology topology;
      ready = client_->GetTopology(&context, v1::TopologyRequest(), &topology).ok() &&
              topology.replicas_size() == kVms;
      for (const v1::Replica& replica : topology.replicas()) {
        ready = ready && replica.state() == "ready";
      }
      if (!ready) absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_TRUE(ready) << Logs();
  }

  void TearDown() override {
    StopTraffic();
    workers_.clear();
    coordinator_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Starts `threads` clients, each submitting batches of `requests` requests of `max_new`
  // tokens (ignore_eos) back to back until StopTraffic.
  void StartTraffic(int threads, int requests, int64_t max_new) {
    for (int t = 0; t < threads; ++t) {
      traffic_.emplace_back([this, t, requests, max_new] {
        for (int batch = 0; !stop_traffic_; ++batch) {
          grpc::ClientContext context;
          context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
          auto stream = client_->SubmitBatch(&context);
          for (int i = 0; i < requests; ++i) {
            v1::GenerateRequest r;
            r.set_request_id(absl::StrCat("t", t, "-b", batch, "-", i));
            for (int k = 0; k < 4 + i % 5; ++k) r.add_prompt_token_ids(1 + (i * 13 + k * 7) % 500);
            r.mutable_sampling()->set_max_new_tokens(max_new);
            r.mutable_sampling()->set_ignore_eos(true);
            stream->Write(r);
          }
          stream->WritesDone();
          v1::Completion completion;
          while (stream->Read(&completion)) {
          }
          stream->Finish();
        }
      });
    }
  }

  // Stops the traffic threads once their current batches end.
  void StopTraffic() {
    stop_traffic_ = true;
    for (std::thread& t : traffic_) t.join();
    traffic_.clear();
  }

  v1::RackStats Stats() const {
    grpc::ClientContext context;
    v1::RackStats stats;
    EXPECT_TRUE(client_->GetStats(&context, v1::StatsRequest(), &stats).ok());
    return stats;
  }

  // The rack's generated tokens per second over `window_seconds` (its 1, 10 or 60 s window).
  static double RackRate(const v1::RackStats& stats, double window_seconds) {
    for (const v1::ThroughputWindow& w : stats.rack().windows()) {
      if (w.window_seconds() == window_seconds) return w.generated_tokens_per_second();
    }
    return -1;
  }

  std::string Logs() const {
    std::string logs = "--- coordinator:\n" + coordinator_->Log();
    for (size_t v = 0; v < workers_.size(); ++v) {
      absl::StrAppend(&logs, "--- vm", v, ":\n", workers_[v]->Log());
    }
    return logs;
  }

  std::string dir_;
  std::string grpc_address_;
  std::string http_address_;  // HOST:PORT of the coordinator's HTTP endpoint
  std::unique_ptr<Child> coordinator_;
  std::vector<std::unique_ptr<Child>> workers_;
  std::unique_ptr<v1::Rack::Stub> client_;
  std::atomic<bool> stop_traffic_{false};
  std::vector<std::thread> traffic_;
};

}  // namespace rackserve::coordinator
