// ReplicaHost on the tiny model: streamed chunks equal the engine's own output, many concurrent
// submitters, cancel, drain, resume after failover equal to the uninterrupted run, bad requests.
#include "worker/replica_host.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/test_model.h"

namespace rackserve::worker {
namespace {

using sampling::FinishReason;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);

// Collects the chunks of many requests; checks they are contiguous and end exactly once.
class Collector {
 public:
  struct Result {
    std::vector<int32_t> tokens;
    int64_t first_index = -1;  // of the first chunk
    FinishReason finish = FinishReason::kNone;
    int64_t prompt_tokens = 0;
    absl::Status status;
    int chunks = 0;
  };

  ChunkSink Sink(const std::string& id) {
    return [this, id](const TokenChunk& chunk) {
      std::lock_guard<std::mutex> lock(mu_);
      Result& r = results_[id];
      EXPECT_EQ(r.finish, FinishReason::kNone) << "chunk after the end of " << id;
      if (r.chunks == 0) r.first_index = chunk.first_index;
      EXPECT_EQ(chunk.first_index, r.first_index + static_cast<int64_t>(r.tokens.size())) << id;
      r.tokens.insert(r.tokens.end(), chunk.token_ids.begin(), chunk.token_ids.end());
      ++r.chunks;
      r.finish = chunk.finish;
      r.status = chunk.status;
      r.prompt_tokens = chunk.prompt_tokens;
      if (chunk.finish != FinishReason::kNone) ++finished_;
      cv_.notify_all();
    };
  }

  // Waits until `n` requests finished.
  bool WaitFinished(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(kWait), [&] { return finished_ >= n; });
  }
  // Waits until request `id` received at least one token.
  bool WaitStarted(const std::string& id) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                        [&] { return results_.contains(id) && !results_[id].tokens.empty(); });
  }
  Result Get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return results_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Result> results_;
  int finished_ = 0;
};

engine::EngineOptions Options() {
  engine::EngineOptions options;
  options.num_threads = 2;
  return options;
}

std::unique_ptr<ReplicaHost> LoadHost(engine::EngineOptions options = Options()) {
  auto host = ReplicaHost::Load("r0", testing::TinyModelDir(), options);
  EXPECT_TRUE(host.ok()) << host.status();
  return host.ok() ? *std::move(host) : nullptr;
}

std::vector<int32_t> RandomPrompt(std::mt19937_64& rng, int64_t len) {
  std::uniform_int_distribution<int32_t> dist(3, 511);
  std::vector<int32_t> p(len);
  for (auto& t : p) t = dist(rng);
  return p;
}

ReplicaRequest Request(const std::string& id, std::vector<int32_t> prompt, int64_t max_new,
                       uint64_t seed = 0) {
  ReplicaRequest r;
  r.request_id = id;
  r.prompt = std::move(prompt);
  r.sampling.max_new_tokens = max_new;
  r.sampling.ignore_eos = true;
  if (seed != 0) {
    r.sampling.temperature = 0.9f;
    r.sampling.top_k = 40;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = seed;
  }
  return r;
}

// The engine's own output for `r`, run alone without the host.
std::vector<int32_t> EngineTokens(const ReplicaRequest& r) {
  auto engine = engine::Engine::Load(testing::TinyModelDir(), Options());
  EXPECT_TRUE(engine.ok()) << engine.status();
  engine::Request request;
  request.id = 1;
  request.prompt = r.prompt;
  request.sampling = r.sampling;
  EXPECT_TRUE((*engine)->Submit(request).ok());
  std::vector<int32_t> tokens;
  while ((*engine)->has_work()) {
    auto events = (*engine)->Step();
    EXPECT_TRUE(events.ok()) << events.status();
    for (const engine::TokenEvent& e : *events) {
      if (e.token >= 0) tokens.push_back(e.token);
    }
  }
  return tokens;
}

TEST(ReplicaHostTest, StreamsTheEnginesTokensAndCountsThem) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(1);
  const ReplicaRequest r = Request("a", RandomPrompt(rng, 13), 12);
  Collector collector;
  ASSERT_TRUE(host->Submit(r, collector.Sink("a")).ok());
  ASSERT_TRUE(collector.WaitFinished(1));
  const Collector::Result got = collector.Get("a");
  EXPECT_TRUE(got.status.ok()) << got.status;
  EXPECT_EQ(got.first_index, 0);
  EXPECT_EQ(got.tokens, EngineTokens(r));
  EXPECT_EQ(got.finish, FinishReason::kMaxTokens);
  EXPECT_EQ(got.prompt_tokens, 13);
  EXPECT_GT(got.chunks, 1);  // streamed, not delivered at the end

  ASSERT_TRUE(host->WaitIdle(kWait));
  const ReplicaCounters c = host->counters();
  EXPECT_EQ(c.replica_id, "r0");
  EXPECT_EQ(c.generated_tokens, 12);
  EXPECT_EQ(c.prompt_tokens, 13);
  EXPECT_GE(c.steps, 12);
  EXPECT_GT(c.busy_seconds, 0);
  EXPECT_GT(c.kv_blocks_total, 0);
  EXPECT_EQ(c.kv_blocks_used, 0);
  EXPECT_EQ(c.running, 0);
  EXPECT_EQ(c.waiting, 0);
  EXPECT_EQ(c.free_token_credit, c.kv_blocks_total * Options().kv_block_size);
}

TEST(ReplicaHostTest, ManyConcurrentSubmittersGetTheirOwnTokens) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 6;
  std::vector<ReplicaRequest> requests;
  std::mt19937_64 rng(2);
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    requests.push_back(Request("req" + std::to_string(i), RandomPrompt(rng, 1 + i * 3), 4 + i % 7,
                               i % 2 == 0 ? 0 : 100 + i));
  }
  Collector collector;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) {
        const absl::Status s = host->Submit(requests[i], collector.Sink(requests[i].request_id));
        EXPECT_TRUE(s.ok()) << s;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(collector.WaitFinished(kThreads * kPerThread));
  int64_t total = 0;
  for (const ReplicaRequest& r : requests) {
    const Collector::Result got = collector.Get(r.request_id);
    EXPECT_EQ(got.tokens, EngineTokens(r)) << r.request_id;
    EXPECT_EQ(got.finish, FinishReason::kMaxTokens) << r.request_id;
    total += static_cast<int64_t>(got.tokens.size());
  }
  ASSERT_TRUE(host->WaitIdle(kWait));
  EXPECT_EQ(host->counters().generated_tokens, total);
}

TEST(ReplicaHostTest, CancelEndsTheRequestWithOneFinalChunk) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(3);
  Collector collector;
  ASSERT_TRUE(
      host->Submit(Request("long", RandomPrompt(rng, 5), 400), collector.Sink("long")).ok());
  ASSERT_TRUE(collector.WaitStarted("long"));
  ASSERT_TRUE(host->Cancel("long").ok());
  ASSERT_TRUE(collector.WaitFinished(1));
  const Collector::Result got = collector.Get("long");
  EXPECT_EQ(got.finish, FinishReason::kCancelled);
  EXPECT_TRUE(got.status.ok()) << got.status;
  EXPECT_LT(got.tokens.size(), 400u);
  ASSERT_TRUE(host->WaitIdle(kWait));
  const absl::Status again = host->Cancel("long");
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(again.message()), HasSubstr("'long'"));
  EXPECT_EQ(host->Cancel("never").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(host->counters().kv_blocks_used, 0);
}

TEST(ReplicaHostTest, DrainFinishesInFlightAndRefusesNewRequests) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(4);
  Collector collector;
  for (int i = 0; i < 3; ++i) {
    const std::string id = "d" + std::to_string(i);
    ASSERT_TRUE(host->Submit(Request(id, RandomPrompt(rng, 7), 20), collector.Sink(id)).ok());
  }
  host->Drain();
  EXPECT_TRUE(host->draining());
  const absl::Status refused = host->Submit(Request("late", {5, 6}, 4), collector.Sink("late"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("'r0' is draining"));
  ASSERT_TRUE(host->WaitIdle(kWait));
  ASSERT_TRUE(collector.WaitFinished(3));
  for (int i = 0; i < 3; ++i) {
    const Collector::Result got = collector.Get("d" + std::to_string(i));
    EXPECT_EQ(got.finish, FinishReason::kMaxTokens);
    EXPECT_EQ(got.tokens.size(), 20u);
  }
  EXPECT_EQ(collector.Get("late").chunks, 0);
}

// Failover: resumed after k tokens, the request continues exactly as the uninterrupted run, with
// chunk indices continuing after the resumed tokens.
TEST(ReplicaHostTest, ResumedRequestEqualsTheUninterruptedRun) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(5);
  for (const uint64_t seed : {uint64_t{0}, uint64_t{77}}) {
    const std::string tag = seed == 0 ? "greedy" : "seeded";
    const ReplicaRequest full = Request(tag, RandomPrompt(rng, 11), 15, seed);
    Collector collector;
    ASSERT_TRUE(host->Submit(full, collector.Sink(tag)).ok());
    ASSERT_TRUE(collector.WaitFinished(1));
    const Collector::Result uninterrupted = collector.Get(tag);
    ASSERT_EQ(uninterrupted.tokens.size(), 15u);
    ASSERT_TRUE(host->WaitIdle(kWait));

    const int64_t k = 6;
    ReplicaRequest resumed = full;
    resumed.request_id = tag + "-resumed";
    resumed.resume_tokens.assign(uninterrupted.tokens.begin(), uninterrupted.tokens.begin() + k);
    ASSERT_TRUE(host->Submit(resumed, collector.Sink(resumed.request_id)).ok());
    ASSERT_TRUE(collector.WaitFinished(2));
    const Collector::Result rest = collector.Get(resumed.request_id);
    EXPECT_EQ(rest.first_index, k) << tag;
    EXPECT_EQ(rest.prompt_tokens, 11) << tag;
    EXPECT_EQ(rest.finish, uninterrupted.finish) << tag;
    EXPECT_EQ(rest.tokens,
              std::vector<int32_t>(uninterrupted.tokens.begin() + k, uninterrupted.tokens.end()))
        << tag;
  }
}

TEST(ReplicaHostTest, BadRequestsAreRejectedWithTheField) {
  engine::EngineOptions options = Options();
  options.kv_block_size = 4;
  options.kv_num_blocks = 16;  // 64 tokens
  auto host = LoadHost(options);
  ASSERT_NE(host, nullptr);
  Collector collector;
  auto expect = [&](ReplicaRequest r, absl::StatusCode code, const std::string& culprit) {
    const absl::Status s = host->Submit(std::move(r), collector.Sink("bad"));
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(culprit));
  };
  expect(Request("", {5}, 4), absl::StatusCode::kInvalidArgument, "request_id");
  expect(Request("x", {}, 4), absl::StatusCode::kInvalidArgument, "prompt_token_ids");
  expect(Request("x", {5, 512}, 4), absl::StatusCode::kInvalidArgument,
         "prompt_token_ids[1] = 512");
  ReplicaRequest bad_resume = Request("x", {5}, 4);
  bad_resume.resume_tokens = {-3};
  expect(bad_resume, absl::StatusCode::kInvalidArgument, "resume_token_ids[0] = -3");
  ReplicaRequest bad_top_p = Request("x", {5}, 4);
  bad_top_p.sampling.top_p = 2;
  expect(bad_top_p, absl::StatusCode::kInvalidArgument, "sampling.top_p");
  expect(Request("x", {5}, 0), absl::StatusCode::kInvalidArgument, "sampling.max_new_tokens");
  ReplicaRequest all_resumed = Request("x", {5}, 2);
  all_resumed.resume_tokens = {7, 8};
  expect(all_resumed, absl::StatusCode::kInvalidArgument, "resume_token_ids has 2 tokens");
  expect(Request("x", std::vector<int32_t>(512, 5), 4), absl::StatusCode::kInvalidArgument,
         "context");
  expect(Request("x", std::vector<int32_t>(40, 5), 30), absl::StatusCode::kInvalidArgument,
         "KV cache");

  ASSERT_TRUE(host->Submit(Request("dup", {5, 6}, 30), collector.Sink("dup")).ok());
  expect(Request("dup", {5, 6}, 3), absl::StatusCode::kAlreadyExists, "'dup'");
  ASSERT_TRUE(collector.WaitFinished(1));
  EXPECT_EQ(collector.Get("bad").chunks, 0);
}

}  // namespace
}  // namespace rackserve::worker
