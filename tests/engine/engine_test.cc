// The engine end to end on generated models: logits against the float64 reference, greedy output
// invariant to batching, chunking and preemption, stop conditions, cancellation, bad input.
#include "runtime/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/model/llama_weights.h"
#include "runtime/model/model_generator.h"
#include "tests/engine/reference_llama.h"

namespace rackserve::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Completion {
  std::vector<int32_t> tokens;
  sampling::FinishReason finish = sampling::FinishReason::kNone;
  std::vector<std::vector<float>> logits;
  int events = 0;
};

std::string MakeModel(const std::string& name, model::ModelConfig config,
                      model::CheckpointFormat format) {
  const std::string dir = ::testing::TempDir() + "/rackserve_engine_test_" + name;
  model::RandomModelOptions options;
  options.config = std::move(config);
  options.seed = 7;
  options.format = format;
  options.with_tokenizer = false;
  const absl::Status s = model::WriteRandomModel(dir, options);
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

model::ModelConfig Tiny() { return *model::PresetModelConfig("tiny"); }

std::vector<int32_t> RandomPrompt(std::mt19937_64& rng, int64_t len, int64_t vocab) {
  std::uniform_int_distribution<int32_t> dist(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> p(len);
  for (auto& t : p) t = dist(rng);
  return p;
}

Request Greedy(RequestId id, std::vector<int32_t> prompt, int64_t max_new) {
  Request r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.sampling.max_new_tokens = max_new;
  r.sampling.ignore_eos = true;
  return r;
}

// Runs requests to completion; checks each request gets exactly one final event.
std::map<RequestId, Completion> RunAll(Engine& engine, std::vector<Request> requests,
                                       int64_t* preempted = nullptr) {
  std::map<RequestId, Completion> out;
  for (auto& r : requests) {
    const absl::Status s = engine.Submit(std::move(r));
    EXPECT_TRUE(s.ok()) << s;
  }
  int64_t preemptions = 0;
  while (engine.has_work()) {
    StepStats stats;
    auto events = engine.Step(&stats);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) break;
    preemptions += stats.preempted;
    for (TokenEvent& e : *events) {
      Completion& c = out[e.id];
      EXPECT_EQ(c.finish, sampling::FinishReason::kNone) << "event after the end of " << e.id;
      ++c.events;
      c.tokens.insert(c.tokens.end(), e.held_tokens.begin(), e.held_tokens.end());
      if (e.token >= 0) {
        EXPECT_EQ(e.index, static_cast<int64_t>(c.tokens.size()));
        c.tokens.push_back(e.token);
        if (!e.logits.empty()) c.logits.push_back(std::move(e.logits));
      }
      c.finish = e.finish;
    }
  }
  for (const auto& [id, c] : out) {
    EXPECT_NE(c.finish, sampling::FinishReason::kNone) << "request " << id << " never ended";
  }
  if (preempted != nullptr) *preempted = preemptions;
  return out;
}

double NormalizedError(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

std::unique_ptr<Engine> LoadOrDie(const std::string& dir, EngineOptions options = {}) {
  options.num_threads = 2;
  auto engine = Engine::Load(dir, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// Greedy generation with logits: every step's logits match the float64 reference within 1e-4
// normalized error, and every greedy token is the reference's argmax.
void ExpectMatchesReference(const std::string& dir, EngineOptions options) {
  std::unique_ptr<Engine> engine = LoadOrDie(dir, options);
  ASSERT_NE(engine, nullptr);
  model::LoadOptions load;
  load.quantize_format = options.quantize_format;
  auto weights = model::LoadLlamaWeights(dir, load);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const testing::ReferenceLlama reference(*weights);

  std::mt19937_64 rng(11);
  std::vector<int32_t> prompt = RandomPrompt(rng, 23, engine->config().vocab_size);
  Request r = Greedy(1, prompt, 8);
  r.return_logits = true;
  auto out = RunAll(*engine, {r});
  const Completion& c = out[1];
  ASSERT_EQ(c.tokens.size(), 8u);
  ASSERT_EQ(c.logits.size(), 8u);
  std::vector<int32_t> seq = prompt;
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    const std::vector<double> ref = reference.Forward(seq).back();
    EXPECT_LT(NormalizedError(c.logits[i], ref), 1e-4) << "token " << i;
    const auto argmax = std::max_element(ref.begin(), ref.end()) - ref.begin();
    EXPECT_EQ(c.tokens[i], argmax) << "token " << i;
    seq.push_back(c.tokens[i]);
  }
}

TEST(EngineTest, Nvfp4CheckpointMatchesFloat64Reference) {
  ExpectMatchesReference(MakeModel("nvfp4", Tiny(), model::CheckpointFormat::kNvfp4), {});
}

TEST(EngineTest, Bf16QuantizedAtLoadToNvfp4MatchesReference) {
  ExpectMatchesReference(MakeModel("bf16", Tiny(), model::CheckpointFormat::kBf16), {});
}

TEST(EngineTest, Bf16QuantizedAtLoadToMxfp4MatchesReference) {
  EngineOptions options;
  options.quantize_format = numerics::Fp4Format::kMxfp4;
  ExpectMatchesReference(MakeModel("bf16_mx", Tiny(), model::CheckpointFormat::kBf16), options);
}

TEST(EngineTest, Llama3RopeScalingTiedEmbeddingsMatchReference) {
  model::ModelConfig c = Tiny();
  c.rope_theta = 500000.0;
  c.rope_scaling.type = model::RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 64;
  c.tie_word_embeddings = true;
  c.num_key_value_heads = 1;  // GQA group of 4
  ExpectMatchesReference(MakeModel("llama3", c, model::CheckpointFormat::kNvfp4), {});
}

class EngineBatchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeModel("batch", Tiny(), model::CheckpointFormat::kNvfp4));
  }
  static void TearDownTestSuite() { delete dir_; }

  // Six requests of mixed prompt lengths; three greedy, three sampled with seeds.
  static std::vector<Request> MixedRequests() {
    std::mt19937_64 rng(5);
    std::vector<Request> rs;
    const int64_t lengths[] = {3, 41, 17, 60, 1, 29};
    for (int i = 0; i < 6; ++i) {
      Request r = Greedy(100 + i, RandomPrompt(rng, lengths[i], 512), 10 + i);
      if (i % 2 == 1) {
        r.sampling.temperature = 0.8f;
        r.sampling.top_k = 50;
        r.sampling.top_p = 0.9f;
        r.sampling.seed = 1000 + i;
      }
      rs.push_back(r);
    }
    return rs;
  }

  // Each request run alone on a fresh default engine.
  static std::map<RequestId, Completion> Alone() {
    std::map<RequestId, Completion> out;
    for (const Request& r : MixedRequests()) {
      auto engine = LoadOrDie(*dir_);
      out[r.id] = RunAll(*engine, {r})[r.id];
    }
    return out;
  }

  static void ExpectSameTokens(const std::map<RequestId, Completion>& a,
                               const std::map<RequestId, Completion>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [id, c] : a) {
      EXPECT_EQ(c.tokens, b.at(id).tokens) << "request " << id;
      EXPECT_EQ(c.finish, b.at(id).finish) << "request " << id;
    }
  }

  static std::string* dir_;
};
std::string* EngineBatchTest::dir_ = nullptr;

TEST_F(EngineBatchTest, OutputIdenticalAloneAndInABatch) {
  auto engine = LoadOrDie(*dir_);
  ExpectSameTokens(Alone(), RunAll(*engine, MixedRequests()));
}

TEST_F(EngineBatchTest, OutputIdenticalWithChunkedPrefill) {
  EngineOptions options;
  options.scheduler.max_tokens_per_step = 7;  // every prompt above 7 tokens is chunked
  auto engine = LoadOrDie(*dir_, options);
  ExpectSameTokens(Alone(), RunAll(*engine, MixedRequests()));
}

TEST_F(EngineBatchTest, OutputIdenticalAfterPreemptionAndRecompute) {
  EngineOptions options;
  options.kv_block_size = 4;
  options.kv_num_blocks = 20;  // 80 tokens for six requests of up to 75: preemption is certain
  auto engine = LoadOrDie(*dir_, options);
  int64_t preempted = 0;
  auto batched = RunAll(*engine, MixedRequests(), &preempted);
  EXPECT_GT(preempted, 0);
  ExpectSameTokens(Alone(), batched);
}

TEST_F(EngineBatchTest, StopConditions) {
  auto engine = LoadOrDie(*dir_);
  std::mt19937_64 rng(3);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 9, 512);
  auto free_run = RunAll(*engine, {Greedy(1, prompt, 6)});
  EXPECT_EQ(free_run[1].tokens.size(), 6u);
  EXPECT_EQ(free_run[1].finish, sampling::FinishReason::kMaxTokens);

  Request stop = Greedy(2, prompt, 6);
  stop.sampling.stop_token_ids = {free_run[1].tokens[3]};
  auto stopped = RunAll(*engine, {stop});
  EXPECT_EQ(stopped[2].finish, sampling::FinishReason::kStopToken);
  EXPECT_LE(stopped[2].tokens.size(), 4u);
  EXPECT_EQ(stopped[2].tokens.back(), free_run[1].tokens[3]);

  Request eos = Greedy(3, prompt, 6);
  eos.sampling.ignore_eos = false;
  auto eos_run = RunAll(*engine, {eos});
  const auto& toks = eos_run[3].tokens;
  const bool hit_eos = std::find(toks.begin(), toks.end(), 2) != toks.end();
  EXPECT_EQ(eos_run[3].finish,
            hit_eos ? sampling::FinishReason::kEos : sampling::FinishReason::kMaxTokens);

  // Three positions of context left: the request ends with "length" after three tokens.
  const int64_t max_pos = engine->config().max_position_embeddings;
  auto full = RunAll(*engine, {Greedy(4, RandomPrompt(rng, max_pos - 3, 512), 10)});
  EXPECT_EQ(full[4].tokens.size(), 3u);
  EXPECT_EQ(full[4].finish, sampling::FinishReason::kLength);
}

TEST_F(EngineBatchTest, CancelEndsARequestWithOneFinalEvent) {
  auto engine = LoadOrDie(*dir_);
  std::mt19937_64 rng(4);
  ASSERT_TRUE(engine->Submit(Greedy(1, RandomPrompt(rng, 5, 512), 50)).ok());
  ASSERT_TRUE(engine->Submit(Greedy(2, RandomPrompt(rng, 5, 512), 5)).ok());
  ASSERT_TRUE(engine->Step().ok());
  ASSERT_TRUE(engine->Cancel(1).ok());
  EXPECT_EQ(engine->Cancel(1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->Cancel(77).code(), absl::StatusCode::kNotFound);
  std::map<RequestId, sampling::FinishReason> finish;
  int64_t tokens_after_cancel_for_1 = 0;
  while (engine->has_work()) {
    auto events = engine->Step();
    ASSERT_TRUE(events.ok());
    for (const TokenEvent& e : *events) {
      if (e.id == 1 && e.token >= 0) ++tokens_after_cancel_for_1;
      if (e.finish != sampling::FinishReason::kNone) {
        EXPECT_FALSE(finish.contains(e.id));
        finish[e.id] = e.finish;
      }
    }
  }
  EXPECT_EQ(tokens_after_cancel_for_1, 0);
  EXPECT_EQ(finish[1], sampling::FinishReason::kCancelled);
  EXPECT_EQ(finish[2], sampling::FinishReason::kMaxTokens);
  EXPECT_EQ(engine->num_in_flight(), 0);
}

// hold_after_first: two events per request (its first token, then the end with every token in
// between), the same tokens as one event per token — in a batch, and after preemption.
TEST_F(EngineBatchTest, HoldAfterFirstGivesTheSameTokensInTwoEvents) {
  std::vector<Request> held = MixedRequests();
  for (Request& r : held) r.hold_after_first = true;
  const std::map<RequestId, Completion> alone = Alone();
  auto engine = LoadOrDie(*dir_);
  const std::map<RequestId, Completion> batched = RunAll(*engine, held);
  ExpectSameTokens(alone, batched);
  for (const auto& [id, c] : batched) EXPECT_EQ(c.events, 2) << "request " << id;

  EngineOptions small_cache;
  small_cache.kv_block_size = 4;
  small_cache.kv_num_blocks = 20;
  auto preempting = LoadOrDie(*dir_, small_cache);
  int64_t preempted = 0;
  ExpectSameTokens(alone, RunAll(*preempting, held, &preempted));
  EXPECT_GT(preempted, 0);
}

// CancelAll ends every request at once: the one already cancelled and those still running each
// get one final event, a held request's with the tokens it generated after its first.
TEST_F(EngineBatchTest, CancelAllEndsEveryRequestWithItsHeldTokens) {
  auto engine = LoadOrDie(*dir_);
  std::mt19937_64 rng(6);
  std::vector<Request> requests;
  for (RequestId id = 1; id <= 3; ++id) {
    requests.push_back(Greedy(id, RandomPrompt(rng, 4 + id, 512), 40));
    requests.back().hold_after_first = id != 3;
  }
  const Completion full_1 = RunAll(*LoadOrDie(*dir_), {requests[0]})[1];
  for (const Request& r : requests) ASSERT_TRUE(engine->Submit(r).ok());
  std::map<RequestId, std::vector<int32_t>> streamed;  // the tokens of per-step events
  for (int step = 0; step < 6; ++step) {
    auto events = engine->Step();
    ASSERT_TRUE(events.ok()) << events.status();
    for (const TokenEvent& e : *events) streamed[e.id].push_back(e.token);
  }
  EXPECT_EQ(streamed[1].size(), 1u);  // held after its first
  EXPECT_EQ(streamed[3].size(), 6u);
  ASSERT_TRUE(engine->Cancel(2).ok());
  std::map<RequestId, TokenEvent> finals;
  for (TokenEvent& e : engine->CancelAll()) {
    EXPECT_FALSE(finals.contains(e.id)) << e.id;
    EXPECT_EQ(e.finish, sampling::FinishReason::kCancelled) << e.id;
    finals[e.id] = std::move(e);
  }
  ASSERT_EQ(finals.size(), 3u);
  EXPECT_EQ(finals[1].held_tokens,
            std::vector<int32_t>(full_1.tokens.begin() + 1, full_1.tokens.begin() + 6));
  EXPECT_EQ(finals[2].held_tokens.size(), 5u);
  EXPECT_TRUE(finals[3].held_tokens.empty());
  EXPECT_FALSE(engine->has_work());
  EXPECT_EQ(engine->num_in_flight(), 0);
  EXPECT_TRUE(engine->CancelAll().empty());
}

// Failover: a request resumed with its first k tokens as prompt suffix and step_offset = k
// continues exactly as the uninterrupted run (greedy and seeded sampling), indices from k.
TEST_F(EngineBatchTest, ResumedRequestContinuesTheUninterruptedRun) {
  for (const Request& original : MixedRequests()) {
    auto engine = LoadOrDie(*dir_);
    const Completion full = RunAll(*engine, {original})[original.id];
    ASSERT_GE(full.tokens.size(), 4u);
    for (const int64_t k : {int64_t{1}, int64_t{3}}) {
      Request resumed = original;
      resumed.prompt.insert(resumed.prompt.end(), full.tokens.begin(), full.tokens.begin() + k);
      resumed.step_offset = k;
      ASSERT_TRUE(engine->Submit(resumed).ok());
      std::vector<int32_t> tokens(full.tokens.begin(), full.tokens.begin() + k);
      sampling::FinishReason finish = sampling::FinishReason::kNone;
      while (engine->has_work()) {
        auto events = engine->Step();
        ASSERT_TRUE(events.ok()) << events.status();
        for (const TokenEvent& e : *events) {
          EXPECT_EQ(e.index, static_cast<int64_t>(tokens.size()));
          tokens.push_back(e.token);
          finish = e.finish;
        }
      }
      EXPECT_EQ(tokens, full.tokens) << "request " << original.id << " resumed after " << k;
      EXPECT_EQ(finish, full.finish) << "request " << original.id << " resumed after " << k;
    }
  }
}

TEST_F(EngineBatchTest, BadRequestsAreRejectedAndChangeNothing) {
  EngineOptions options;
  options.kv_block_size = 4;
  options.kv_num_blocks = 8;  // 32 tokens
  auto engine = LoadOrDie(*dir_, options);
  auto expect = [&](Request r, absl::StatusCode code, const std::string& culprit) {
    const absl::Status s = engine->Submit(std::move(r));
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(culprit));
  };
  expect(Greedy(1, {}, 4), absl::StatusCode::kInvalidArgument, "prompt is empty");
  expect(Greedy(2, {5, 512, 7}, 4), absl::StatusCode::kInvalidArgument, "prompt[1] = 512");
  expect(Greedy(3, {5, -1}, 4), absl::StatusCode::kInvalidArgument, "prompt[1] = -1");
  expect(Greedy(4, std::vector<int32_t>(512, 5), 4), absl::StatusCode::kInvalidArgument, "context");
  Request bad_temp = Greedy(5, {5, 6}, 4);
  bad_temp.sampling.temperature = -1;
  expect(bad_temp, absl::StatusCode::kInvalidArgument, "temperature");
  Request bad_top_p = Greedy(6, {5, 6}, 4);
  bad_top_p.sampling.top_p = 0;
  expect(bad_top_p, absl::StatusCode::kInvalidArgument, "top_p");
  Request bad_stop = Greedy(7, {5, 6}, 4);
  bad_stop.sampling.stop_token_ids = {9999};
  expect(bad_stop, absl::StatusCode::kInvalidArgument, "stop_token_ids");
  expect(Greedy(8, {5, 6}, 0), absl::StatusCode::kInvalidArgument, "max_new_tokens");
  expect(Greedy(9, std::vector<int32_t>(30, 5), 10), absl::StatusCode::kInvalidArgument, "KV");
  Request all_resumed = Greedy(11, {5, 6, 7}, 2);
  all_resumed.step_offset = 2;
  expect(all_resumed, absl::StatusCode::kInvalidArgument, "step_offset = 2");
  Request logits_held = Greedy(13, {5, 6}, 2);
  logits_held.return_logits = true;
  logits_held.hold_after_first = true;
  expect(logits_held, absl::StatusCode::kInvalidArgument, "hold_after_first");
  Request negative_offset = Greedy(12, {5, 6}, 2);
  negative_offset.step_offset = -1;
  expect(negative_offset, absl::StatusCode::kInvalidArgument, "step_offset = -1");
  EXPECT_FALSE(engine->has_work());

  ASSERT_TRUE(engine->Submit(Greedy(10, {5, 6}, 3)).ok());
  expect(Greedy(10, {5, 6}, 3), absl::StatusCode::kAlreadyExists, "10");
  auto out = RunAll(*engine, {});
  EXPECT_EQ(out[10].tokens.size(), 3u);
}

// ---- Loading bad model directories ----

class EngineLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const std::string* source =
        new std::string(MakeModel("load_src", Tiny(), model::CheckpointFormat::kNvfp4));
    dir_ = ::testing::TempDir() + "/rackserve_engine_load_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::copy(*source, dir_, fs::copy_options::recursive);
  }

  nlohmann::json Config() {
    std::ifstream in(dir_ + "/config.json");
    return nlohmann::json::parse(in);
  }
  void WriteConfig(const nlohmann::json& j) { std::ofstream(dir_ + "/config.json") << j.dump(); }

  absl::Status Load() { return Engine::Load(dir_, {}).status(); }

  std::string dir_;
};

TEST_F(EngineLoadTest, ConfigMissingAField) {
  nlohmann::json j = Config();
  j.erase("hidden_size");
  WriteConfig(j);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("hidden_size"));
}

TEST_F(EngineLoadTest, MissingTensor) {
  nlohmann::json j = Config();
  j["num_hidden_layers"] = 3;  // the checkpoint has two
  WriteConfig(j);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.layers.2."));
}

TEST_F(EngineLoadTest, WrongShape) {
  nlohmann::json j = Config();
  j["intermediate_size"] = 384;
  WriteConfig(j);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("mlp."));
}

TEST_F(EngineLoadTest, TruncatedSafetensors) {
  const std::string file = dir_ + "/model.safetensors";
  fs::resize_file(file, fs::file_size(file) / 2);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.safetensors"));
}

TEST_F(EngineLoadTest, MissingDirectory) {
  fs::remove_all(dir_);
  EXPECT_EQ(Load().code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineLoadTest, UnknownBackend) {
  EngineOptions options;
  options.backend = "tpu";
  const absl::Status s = Engine::Load(dir_, options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("tpu"));
}

}  // namespace
}  // namespace rackserve::engine
