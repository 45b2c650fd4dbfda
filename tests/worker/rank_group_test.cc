// RankGroup in one process: a replica's ranks formed through a shared-directory rendezvous give
// the single-process engine's greedy tokens (TP2 and PP2), stay up when idle for longer than the
// communicator timeout, report a dead peer as the replica's failure, and refuse bad options.
#include "worker/rank_group.h"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/comm/file_rendezvous.h"
#include "runtime/model/model_generator.h"

namespace rackserve::worker {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMaxNew = 8;

class RankGroupTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model::ModelConfig c = *model::PresetModelConfig("tiny");
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 384;
    model_ = new std::string(::testing::TempDir() + "/rackserve_rank_group_model_" +
                             std::to_string(getpid()));
    model::RandomModelOptions options;
    options.config = c;
    options.seed = 11;
    options.with_tokenizer = false;
    ASSERT_TRUE(model::WriteRandomModel(*model_, options).ok());
    auto engine = engine::Engine::Load(*model_, EngineOptions());
    ASSERT_TRUE(engine.ok()) << engine.status();
    reference_ = new std::vector<std::vector<int32_t>>(Generate(**engine));
  }
  static void TearDownTestSuite() {
    std::error_code ignored;
    std::filesystem::remove_all(*model_, ignored);
    delete model_;
    delete reference_;
  }

  static engine::EngineOptions EngineOptions() {
    engine::EngineOptions options;
    options.num_threads = 1;
    options.kv_cache_bytes = int64_t{4} << 20;
    options.scheduler.max_tokens_per_step = 8;  // chunked prefill, mixed batches
    return options;
  }

  // Greedy tokens of three prompts.
  static std::vector<std::vector<int32_t>> Generate(engine::Engine& engine) {
    const std::vector<std::vector<int32_t>> prompts = {
        {1, 5, 9, 200, 17}, {1, 7}, {1, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309}};
    std::vector<std::vector<int32_t>> out(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      engine::Request request;
      request.id = static_cast<engine::RequestId>(i);
      request.prompt = prompts[i];
      request.sampling.max_new_tokens = kMaxNew;
      request.sampling.ignore_eos = true;
      EXPECT_TRUE(engine.Submit(std::move(request)).ok());
    }
    while (engine.has_work()) {
      auto events = engine.Step();
      EXPECT_TRUE(events.ok()) << events.status();
      if (!events.ok()) break;
      for (const engine::TokenEvent& e : *events) {
        if (e.token >= 0) out[e.id].push_back(e.token);
      }
    }
    return out;
  }

  RankGroupOptions Options(int tp, int pp, std::vector<int> local_ranks) {
    RankGroupOptions options;
    options.replica_id = "r0";
    options.tp = tp;
    options.pp = pp;
    options.local_ranks = std::move(local_ranks);
    options.model_dir = *model_;
    options.engine = EngineOptions();
    options.comm_timeout = absl::Seconds(1);
    options.connect_timeout = absl::Seconds(20);
    return options;
  }

  // A fresh rendezvous directory per test; one subdirectory per group id.
  RendezvousFactory FileRendezvous() {
    const std::string dir = ::testing::TempDir() + "/rackserve_rank_group_rv_" +
                            std::to_string(getpid()) + "_" + std::to_string(next_dir_++);
    std::filesystem::remove_all(dir);
    return [dir](const std::string& group_id) {
      std::filesystem::create_directories(dir + "/" + group_id);
      return comm::MakeFileRendezvous(dir + "/" + group_id);
    };
  }

  static std::string* model_;
  static std::vector<std::vector<int32_t>>* reference_;
  int next_dir_ = 0;
};
std::string* RankGroupTest::model_ = nullptr;
std::vector<std::vector<int32_t>>* RankGroupTest::reference_ = nullptr;

TEST_F(RankGroupTest, TensorAndPipelineParallelMatchOneProcessAndSurviveIdling) {
  for (const auto& [tp, pp] : {std::pair{2, 1}, std::pair{1, 2}}) {
    SCOPED_TRACE(absl::StrCat("tp ", tp, " pp ", pp));
    RankGroup group(Options(tp, pp, {0, 1}), FileRendezvous());
    ASSERT_TRUE(group.Form().ok());
    std::unique_ptr<engine::Engine> leader = group.TakeLeaderEngine();
    ASSERT_NE(leader, nullptr);
    EXPECT_EQ(group.TakeLeaderEngine(), nullptr);  // once
    EXPECT_EQ(Generate(*leader), *reference_);
    // Idle for longer than the communicator timeout: the follower still waits for steps.
    absl::SleepFor(absl::Milliseconds(1500));
    EXPECT_TRUE(group.status().ok()) << group.status();
    EXPECT_EQ(Generate(*leader), *reference_);
    EXPECT_TRUE(group.status().ok()) << group.status();
  }
}

TEST_F(RankGroupTest, ReplicaSpanningTwoGroupsFailsWhenTheFollowerGoes) {
  RendezvousFactory rendezvous = FileRendezvous();
  auto follower = std::make_unique<RankGroup>(Options(2, 1, {1}), rendezvous);
  absl::Status follower_formed;
  std::thread forming([&] { follower_formed = follower->Form(); });
  RankGroup leader_group(Options(2, 1, {0}), rendezvous);
  ASSERT_TRUE(leader_group.Form().ok());
  forming.join();
  ASSERT_TRUE(follower_formed.ok()) << follower_formed;
  EXPECT_EQ(follower->TakeLeaderEngine(), nullptr);
  std::unique_ptr<engine::Engine> leader = leader_group.TakeLeaderEngine();
  ASSERT_NE(leader, nullptr);
  EXPECT_EQ(Generate(*leader), *reference_);

  follower.reset();  // its worker goes away: the replica breaks
  engine::Request request;
  request.id = 99;
  request.prompt = {1, 2, 3};
  request.sampling.max_new_tokens = 2;
  ASSERT_TRUE(leader->Submit(std::move(request)).ok());
  const absl::Status step = leader->Step().status();
  EXPECT_FALSE(step.ok());
  EXPECT_THAT(step.message(), HasSubstr("rank 1"));
  const absl::Status status = leader_group.status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("replica 'r0' rank 0"));
}

TEST_F(RankGroupTest, BadOptionsAreInvalidArguments) {
  absl::Status s = RankGroup(Options(2, 1, {}), FileRendezvous()).Form();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("local_ranks"));
  s = RankGroup(Options(2, 1, {0, 2}), FileRendezvous()).Form();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("rank 2 outside [0, 2)"));
  s = RankGroup(Options(2, 1, {1, 1}), FileRendezvous()).Form();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("rank 1 twice"));
}

TEST_F(RankGroupTest, MissingPeerTimesOutNamingIt) {
  RankGroupOptions options = Options(2, 1, {0});
  options.connect_timeout = absl::Milliseconds(300);
  const absl::Status s = RankGroup(options, FileRendezvous()).Form();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("replica 'r0' rank 0"));
}

}  // namespace
}  // namespace rackserve::worker
