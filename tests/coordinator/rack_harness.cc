#include "tests/coordinator/rack_harness.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/wire_conversion.h"
#include "runtime/base/status_macros.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model_generator.h"

namespace rackserve::coordinator::testing {

absl::StatusOr<std::unique_ptr<TestRack>> TestRack::Start(const TestRackOptions& options) {
  std::unique_ptr<TestRack> rack(new TestRack());
  rack->dir_ = absl::StrCat(::testing::TempDir(), "/rackserve_test_rack_", getpid(), "_",
                            absl::ToUnixNanos(absl::Now()));
  rack->model_dir_ = rack->dir_ + "/model";
  model::RandomModelOptions model_options;
  RS_ASSIGN_OR_RETURN(model_options.config, model::PresetModelConfig("tiny"));
  model_options.seed = options.model_seed;
  model_options.with_tokenizer = false;
  RS_RETURN_IF_ERROR(model::WriteRandomModel(rack->model_dir_, model_options));
  {
    std::ofstream topology(rack->dir_ + "/rack.yaml");
    topology << "model: " << rack->model_dir_ << "\nvms:\n";
    for (int i = 0; i < options.workers; ++i) topology << "  - {name: vm" << i << ", devices: 1}\n";
    topology << "layout: {tp: 1, pp: 1}\n";
    if (!topology) {
      return absl::InternalError(absl::StrCat("could not write ", rack->dir_, "/rack.yaml"));
    }
  }

  std::vector<std::string> argv = {options.coordinator_binary, "--topology",
                                   rack->dir_ + "/rack.yaml", "--listen", "127.0.0.1:0"};
  argv.insert(argv.end(), options.coordinator_flags.begin(), options.coordinator_flags.end());
  rack->coordinator_ = std::make_unique<Child>(argv, rack->dir_ + "/coordinator.log");
  const absl::Time deadline = absl::Now() + options.ready_timeout;
  const std::string address =
      rack->coordinator_->WaitForLine("listening on ", options.ready_timeout);
  if (address.empty()) {
    return absl::UnavailableError(
        absl::StrCat("the coordinator did not start listening:\n", rack->Logs()));
  }
  for (int i = 0; i < options.workers; ++i) {
    const std::string vm = absl::StrCat("vm", i);
    argv = {options.worker_binary, "--coordinator", address, "--vm", vm, "--model"};
    argv.insert(argv.end(), {rack->model_dir_, "--devices", "1", "--threads", "1"});
    argv.insert(argv.end(), options.worker_flags.begin(), options.worker_flags.end());
    rack->workers_.push_back(
        std::make_unique<Child>(argv, absl::StrCat(rack->dir_, "/", vm, ".log")));
  }
  rack->client_ =
      v1::Rack::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  // Every replica ready, and its KV reported by a heartbeat (the coordinator's credit).
  while (true) {
    bool ready = false;
    if (absl::StatusOr<v1::Topology> topology = rack->Topology(); topology.ok()) {
      ready = topology->replicas_size() == options.workers;
      for (const v1::Replica& r : topology->replicas()) ready = ready && r.state() == "ready";
    }
    if (ready) {
      const v1::RackStats stats = rack->Stats();
      ready = stats.replicas_size() == options.workers;
      for (const v1::ScopeStats& r : stats.replicas()) ready = ready && r.kv_blocks_total() > 0;
    }
    if (ready) return rack;
    if (absl::Now() > deadline) {
      return absl::UnavailableError(
          absl::StrCat("the rack's ", options.workers, " replicas were not ready in ",
                       absl::FormatDuration(options.ready_timeout), ":\n", rack->Logs()));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

TestRack::~TestRack() {
  workers_.clear();
  coordinator_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string TestRack::Logs() const {
  std::string logs;
  if (coordinator_ != nullptr) absl::StrAppend(&logs, "--- coordinator\n", coordinator_->Log());
  for (size_t i = 0; i < workers_.size(); ++i) {
    absl::StrAppend(&logs, "--- vm", i, "\n", workers_[i]->Log());
  }
  return logs;
}

v1::RackStats TestRack::Stats() {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::RackStats stats;
  const grpc::Status status = client_->GetStats(&context, v1::StatsRequest(), &stats);
  EXPECT_TRUE(status.ok()) << "GetStats: " << status.error_message();
  return stats;
}

absl::StatusOr<v1::Topology> TestRack::Topology() {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::Topology topology;
  const grpc::Status status = client_->GetTopology(&context, v1::TopologyRequest(), &topology);
  if (!status.ok()) return wire::FromGrpcStatus(status);
  return topology;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> GreedyReference(
    const std::string& model_dir, const std::vector<std::vector<int32_t>>& prompts,
    const std::vector<int64_t>& max_new_tokens) {
  RS_CHECK(prompts.size() == max_new_tokens.size());
  engine::EngineOptions options;
  options.num_threads = 2;
  options.kv_num_blocks = 2048;  // 32768 tokens: every prompt at once
  RS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                      engine::Engine::Load(model_dir, options));
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::Request request;
    request.id = i + 1;
    request.prompt = prompts[i];
    request.sampling.max_new_tokens = max_new_tokens[i];
    request.sampling.ignore_eos = true;
    RS_RETURN_IF_ERROR(engine->Submit(std::move(request)));
  }
  std::vector<std::vector<int32_t>> outputs(prompts.size());
  while (engine->has_work()) {
    RS_ASSIGN_OR_RETURN(const std::vector<engine::TokenEvent> events, engine->Step());
    for (const engine::TokenEvent& e : events) {
      if (e.token >= 0) outputs[e.id - 1].push_back(e.token);
    }
  }
  return outputs;
}

}  // namespace rackserve::coordinator::testing
