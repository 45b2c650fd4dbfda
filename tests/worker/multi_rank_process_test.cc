// Multi-rank replicas inside rackserve-worker, as real processes on loopback: a coordinator and
// two workers serve a TP2 replica spanning both VMs (vm0 device 0 + vm1 device 0) and a PP2
// replica on vm0's devices 1 and 2, their communicators formed through the coordinator's
// rendezvous. Requests through the Rack API give the single-process engine's greedy tokens, on
// both replicas; an idle period longer than the workers' --comm-timeout-s breaks nothing; and
// after kill -9 of vm1's worker (the TP2 follower) the requests on TP2 fail over to PP2 and
// complete with the same tokens.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
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
#include "runtime/engine/engine.h"
#include "runtime/model/model_generator.h"
#include "tests/support/child_process.h"

namespace rackserve::worker {
namespace {

using ::rackserve::testing::Child;

constexpr absl::Duration kWait = absl::Seconds(60);
constexpr int kRequests = 8;
constexpr int64_t kMaxNew = 16;
constexpr double kCommTimeoutSeconds = 3;

std::vector<int32_t> Prompt(int i) {
  std::vector<int32_t> prompt;
  for (int k = 0; k < 3 + (i * 5) % 11; ++k) prompt.push_back(1 + (i * 37 + k * 11) % 500);
  return prompt;
}

// The single-process engine's greedy tokens for every prompt.
std::vector<std::vector<int32_t>> Reference(const std::string& model_dir, int64_t max_new) {
  engine::EngineOptions options;
  options.num_threads = 1;
  options.kv_cache_bytes = int64_t{16} << 20;
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(model_dir, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  std::vector<std::vector<int32_t>> out(kRequests);
  if (!engine.ok()) return out;
  for (int i = 0; i < kRequests; ++i) {
    engine::Request request;
    request.id = i;
    request.prompt = Prompt(i);
    request.sampling.max_new_tokens = max_new;
    request.sampling.ignore_eos = true;
    EXPECT_TRUE((*engine)->Submit(std::move(request)).ok());
  }
  while ((*engine)->has_work()) {
    absl::StatusOr<std::vector<engine::TokenEvent>> events = (*engine)->Step();
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) break;
    for (const engine::TokenEvent& e : *events) {
      if (e.token >= 0) out[e.id].push_back(e.token);
    }
  }
  return out;
}

// Generates every prompt at once (one Generate stream each); the tokens by request, empty for a
// request that failed (with the failure reported).
std::vector<std::vector<int32_t>> GenerateAll(v1::Rack::Stub& client, const std::string& tag,
                                              int64_t max_new) {
  std::vector<std::vector<int32_t>> out(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      v1::GenerateRequest request;
      request.set_request_id(absl::StrCat(tag, "-", i));
      for (int32_t t : Prompt(i)) request.add_prompt_token_ids(t);
      request.mutable_sampling()->set_max_new_tokens(max_new);
      request.mutable_sampling()->set_ignore_eos(true);
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
      auto stream = client.Generate(&context, request);
      v1::TokenChunk chunk;
      std::vector<int32_t> tokens;
      while (stream->Read(&chunk))
        tokens.insert(tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
      const grpc::Status status = stream->Finish();
      EXPECT_TRUE(status.ok()) << request.request_id() << ": " << status.error_message();
      if (status.ok()) out[i] = std::move(tokens);
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

// Generated tokens per replica id, as the coordinator counts them.
std::map<std::string, int64_t> ReplicaTokens(v1::Rack::Stub& client) {
  grpc::ClientContext context;
  v1::RackStats stats;
  EXPECT_TRUE(client.GetStats(&context, v1::StatsRequest(), &stats).ok());
  std::map<std::string, int64_t> tokens;
  for (const v1::ScopeStats& s : stats.replicas()) {
    tokens[s.name()] = s.throughput().generated_tokens_total();
  }
  return tokens;
}

// Generated tokens delivered to clients so far, as the coordinator counts them.
int64_t RackTokens(v1::Rack::Stub& client) {
  grpc::ClientContext context;
  v1::RackStats stats;
  EXPECT_TRUE(client.GetStats(&context, v1::StatsRequest(), &stats).ok());
  return stats.rack().generated_tokens_total();
}

// Polls (bounded) until the workers' reports show both replicas past `before`; the last counts.
std::map<std::string, int64_t> WaitBothServed(v1::Rack::Stub& client,
                                              const std::map<std::string, int64_t>& before) {
  std::map<std::string, int64_t> now;
  for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
    now = ReplicaTokens(client);
    if (now["tp2"] > before.at("tp2") && now["pp2"] > before.at("pp2")) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return now;
}

TEST(MultiRankProcessTest, TpAcrossWorkersAndPpInOneServeIdleAndFailOver) {
  const std::string dir =
      ::testing::TempDir() + "/rackserve_multi_rank_" + std::to_string(getpid());
  // As tests/tools/generate_parallel_test: 4 layers, 8 query heads over 2 KV heads.
  model::ModelConfig config = *model::PresetModelConfig("tiny");
  config.num_hidden_layers = 4;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 2;
  config.head_dim = 16;
  config.intermediate_size = 384;
  model::RandomModelOptions model_options;
  model_options.config = config;
  model_options.seed = 11;
  model_options.with_tokenizer = false;
  ASSERT_TRUE(model::WriteRandomModel(dir + "/model", model_options).ok());
  {
    std::ofstream topology(dir + "/rack.yaml");
    topology
        << "model: " << dir << "/model\n"
        << "vms:\n  - {name: vm0, devices: 3}\n  - {name: vm1, devices: 1}\n"
        << "replicas:\n"
        << "  - {id: tp2, tp: 2, pp: 1, ranks: [{vm: vm0, device: 0}, {vm: vm1, device: 0}]}\n"
        << "  - {id: pp2, tp: 1, pp: 2, ranks: [{vm: vm0, device: 1}, {vm: vm0, device: 2}]}\n";
  }
  const std::vector<std::vector<int32_t>> reference = Reference(dir + "/model", 4 * kMaxNew);

  Child coordinator({RACKSERVE_COORDINATOR_BINARY, "--topology", dir + "/rack.yaml", "--listen",
                     "127.0.0.1:0", "--heartbeat-timeout-s", "2"},
                    dir + "/coordinator.log");
  const std::string address = coordinator.WaitListening(kWait);
  ASSERT_FALSE(address.empty()) << coordinator.Log();
  std::vector<std::unique_ptr<Child>> workers;
  for (const auto& [vm, devices] :
       {std::pair<const char*, const char*>{"vm0", "3"}, {"vm1", "1"}}) {
    workers.push_back(std::make_unique<Child>(
        std::vector<std::string>{RACKSERVE_WORKER_BINARY, "--coordinator", address, "--vm", vm,
                                 "--model", dir + "/model", "--devices", devices, "--threads", "1",
                                 "--kv-cache-mb", "16", "--comm-timeout-s",
                                 absl::StrCat(kCommTimeoutSeconds)},
        absl::StrCat(dir, "/", vm, ".log")));
  }
  auto logs = [&] {
    return absl::StrCat("coordinator:\n", coordinator.Log(), "\nvm0:\n", workers[0]->Log(),
                        "\nvm1:\n", workers[1]->Log());
  };
  auto client = v1::Rack::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  auto prefix = [&](int i, int64_t n) {
    return std::vector<int32_t>(reference[i].begin(), reference[i].begin() + n);
  };

  // Both replicas serve (requests wait for their credit while the ranks form).
  const std::vector<std::vector<int32_t>> first = GenerateAll(*client, "first", kMaxNew);
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(first[i], prefix(i, kMaxNew)) << "request " << i;
  std::map<std::string, int64_t> served = WaitBothServed(*client, {{"tp2", 0}, {"pp2", 0}});
  EXPECT_GT(served["tp2"], 0) << logs();
  EXPECT_GT(served["pp2"], 0) << logs();
  ASSERT_FALSE(HasFailure()) << logs();

  // Idle for longer than the ranks' communicator timeout: both replicas still serve.
  absl::SleepFor(absl::Seconds(kCommTimeoutSeconds + 1.5));
  const std::vector<std::vector<int32_t>> after_idle = GenerateAll(*client, "idle", kMaxNew);
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(after_idle[i], prefix(i, kMaxNew)) << "request " << i;
  }
  const std::map<std::string, int64_t> before = served;
  served = WaitBothServed(*client, before);
  EXPECT_GT(served["tp2"], before.at("tp2")) << logs();
  EXPECT_GT(served["pp2"], before.at("pp2")) << logs();
  ASSERT_FALSE(HasFailure()) << logs();

  // kill -9 of vm1's worker (TP2's follower rank) while requests stream: they all complete.
  // Killed once a tenth of the batch's tokens are out (the coordinator's own count).
  const int64_t delivered = RackTokens(*client);
  std::atomic<bool> done = false, killed_mid_batch = false;
  std::thread killer([&] {
    for (absl::Time until = absl::Now() + kWait; absl::Now() < until;) {
      if (RackTokens(*client) >= delivered + kRequests * 4 * kMaxNew / 10) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    workers[1]->Kill();
    killed_mid_batch = !done;
  });
  const std::vector<std::vector<int32_t>> killed = GenerateAll(*client, "kill", 4 * kMaxNew);
  done = true;
  killer.join();
  EXPECT_TRUE(killed_mid_batch);
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(killed[i], reference[i]) << "request " << i;
  // vm0's worker stays up and serves on (on PP2); TP2 is down.
  std::string tp2_state;
  for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
    grpc::ClientContext context;
    v1::RackStats stats;
    ASSERT_TRUE(client->GetStats(&context, v1::StatsRequest(), &stats).ok());
    for (const v1::ScopeStats& r : stats.replicas()) {
      if (r.name() == "tp2") tp2_state = r.state();
    }
    if (tp2_state == "down") break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(tp2_state, "down");
  const std::vector<std::vector<int32_t>> last = GenerateAll(*client, "last", kMaxNew);
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(last[i], prefix(i, kMaxNew)) << "request " << i;
  EXPECT_FALSE(HasFailure()) << logs();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace rackserve::worker
