// ReplicaHost on the tiny model: streamed chunks equal the engine's own output, many concurrent
// submitters, cancel (a late cancel never reaches a later submission of the same id), drain,
// resume after failover equal to the uninterrupted run, an engine that fails, the counters and
// credit the coordinator routes by, bad requests; StepSinks (one call per step with every chunk
// of it, beside another StepSink on the same host; ended UNAVAILABLE at shutdown).
#include "worker/replica_host.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/failing_runner.h"
#include "tests/worker/test_model.h"

namespace rackserve::worker {
namespace {

using sampling::FinishReason;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);

// A StepSink collecting the chunks of many requests by id, each submitted with Tag(id). Checks
// that one call holds at most one chunk per request and that a request's chunks are contiguous
// and end exactly once.
class Collector : public StepSink {
 public:
  struct Result {
    std::vector<int32_t> tokens;
    int64_t first_index = -1;  // of the first chunk
    FinishReason finish = FinishReason::kNone;
    int64_t prompt_tokens = 0;
    absl::Status status;
    int chunks = 0;
  };

  // The tag to submit request `id` with (the same for every submission of `id`).
  uint64_t Tag(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto [it, inserted] = tags_.try_emplace(id, ids_.size());
    if (inserted) ids_.push_back(id);
    return it->second;
  }

  void DeliverStep(std::span<const ChunkView> chunks) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_FALSE(chunks.empty());
    ++calls_;
    max_batch_ = std::max(max_batch_, chunks.size());
    std::set<uint64_t> tags;
    for (const ChunkView& chunk : chunks) {
      EXPECT_TRUE(tags.insert(chunk.tag).second) << "two chunks of tag " << chunk.tag;
      ASSERT_LT(chunk.tag, ids_.size()) << "tag " << chunk.tag << " was never handed out";
      const std::string& id = ids_[chunk.tag];
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
    }
    cv_.notify_all();
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
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  size_t max_batch() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_batch_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, uint64_t> tags_;  // by id
  std::vector<std::string> ids_;          // by tag
  std::map<std::string, Result> results_;
  int finished_ = 0;
  int calls_ = 0;
  size_t max_batch_ = 0;
};

// A StepSink handing each chunk of a step to `fn`, one at a time.
class EachChunkSink : public StepSink {
 public:
  explicit EachChunkSink(std::function<void(const ChunkView&)> fn) : fn_(std::move(fn)) {}
  void DeliverStep(std::span<const ChunkView> chunks) override {
    for (const ChunkView& chunk : chunks) fn_(chunk);
  }

 private:
  const std::function<void(const ChunkView&)> fn_;
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
  const auto collector = std::make_shared<Collector>();
  ASSERT_TRUE(host->Submit(r, collector, collector->Tag("a")).ok());
  ASSERT_TRUE(collector->WaitFinished(1));
  const Collector::Result got = collector->Get("a");
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

TEST(ReplicaHostTest, StepSinkGetsEachStepsChunksInOneCallBesideAnotherSink) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(7);
  std::vector<ReplicaRequest> requests;
  for (int i = 0; i < 8; ++i) {
    requests.push_back(Request("s" + std::to_string(i), RandomPrompt(rng, 3 + i * 2), 5 + i % 4,
                               i % 2 == 0 ? 0 : 300 + i));
  }
  const auto steps = std::make_shared<Collector>();
  const auto others = std::make_shared<Collector>();
  for (size_t i = 0; i < requests.size(); ++i) {
    // Every third request on another sink: both share the host's steps.
    const std::shared_ptr<Collector>& sink = i % 3 == 2 ? others : steps;
    const absl::Status s =
        host->Submit(requests[i], sink, sink->Tag(requests[i].request_id)).status();
    ASSERT_TRUE(s.ok()) << s;
  }
  ASSERT_TRUE(steps->WaitFinished(6));
  ASSERT_TRUE(others->WaitFinished(2));
  for (size_t i = 0; i < requests.size(); ++i) {
    const Collector::Result got = (i % 3 == 2 ? others : steps)->Get(requests[i].request_id);
    EXPECT_TRUE(got.status.ok()) << got.status;
    EXPECT_EQ(got.first_index, 0) << i;
    EXPECT_EQ(got.tokens, EngineTokens(requests[i])) << i;
    EXPECT_EQ(got.finish, FinishReason::kMaxTokens) << i;
    EXPECT_EQ(got.prompt_tokens, static_cast<int64_t>(requests[i].prompt.size())) << i;
  }
  ASSERT_TRUE(host->WaitIdle(kWait));
  EXPECT_LE(steps->calls(), host->counters().steps);  // at most one call per step
  EXPECT_LE(others->calls(), host->counters().steps);
  EXPECT_GT(steps->max_batch(), 1u);  // batched: several requests in one call
}

TEST(ReplicaHostTest, StepSinkRequestsEndUnavailableWhenTheHostShutsDown) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(8);
  const auto steps = std::make_shared<Collector>();
  ASSERT_TRUE(
      host->Submit(Request("long", RandomPrompt(rng, 5), 400), steps, steps->Tag("long")).ok());
  ASSERT_TRUE(steps->WaitStarted("long"));
  host.reset();
  const Collector::Result got = steps->Get("long");
  EXPECT_EQ(got.finish, FinishReason::kCancelled);
  EXPECT_EQ(got.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got.status.message()), HasSubstr("'r0' shut down"));
  EXPECT_EQ(got.prompt_tokens, 5);
  EXPECT_LT(static_cast<int64_t>(got.tokens.size()), 400);
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
  const auto collector = std::make_shared<Collector>();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) {
        const absl::Status s =
            host->Submit(requests[i], collector, collector->Tag(requests[i].request_id)).status();
        EXPECT_TRUE(s.ok()) << s;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(collector->WaitFinished(kThreads * kPerThread));
  int64_t total = 0;
  for (const ReplicaRequest& r : requests) {
    const Collector::Result got = collector->Get(r.request_id);
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
  const auto collector = std::make_shared<Collector>();
  ASSERT_TRUE(
      host->Submit(Request("long", RandomPrompt(rng, 5), 400), collector, collector->Tag("long"))
          .ok());
  ASSERT_TRUE(collector->WaitStarted("long"));
  ASSERT_TRUE(host->Cancel("long").ok());
  ASSERT_TRUE(collector->WaitFinished(1));
  const Collector::Result got = collector->Get("long");
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
  const auto collector = std::make_shared<Collector>();
  for (int i = 0; i < 3; ++i) {
    const std::string id = "d" + std::to_string(i);
    ASSERT_TRUE(
        host->Submit(Request(id, RandomPrompt(rng, 7), 20), collector, collector->Tag(id)).ok());
  }
  host->Drain();
  EXPECT_TRUE(host->draining());
  EXPECT_EQ(host->counters().free_token_credit, 0);
  const absl::Status refused =
      host->Submit(Request("late", {5, 6}, 4), collector, collector->Tag("late")).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("'r0' is draining"));
  ASSERT_TRUE(host->WaitIdle(kWait));
  ASSERT_TRUE(collector->WaitFinished(3));
  for (int i = 0; i < 3; ++i) {
    const Collector::Result got = collector->Get("d" + std::to_string(i));
    EXPECT_EQ(got.finish, FinishReason::kMaxTokens);
    EXPECT_EQ(got.tokens.size(), 20u);
  }
  EXPECT_EQ(collector->Get("late").chunks, 0);
}

// The coordinator may resubmit a request_id as soon as its final chunk is out (failover): a cancel
// of the earlier submission that arrives late must not end the new one.
TEST(ReplicaHostTest, LateCancelNeverReachesALaterSubmissionOfTheSameId) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(6);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 6);
  const auto first = std::make_shared<Collector>();
  const auto second = std::make_shared<Collector>();
  const auto third = std::make_shared<Collector>();
  const absl::StatusOr<SubmissionId> a =
      host->Submit(Request("same", prompt, 2), first, first->Tag("same"));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(first->WaitFinished(1));
  const absl::StatusOr<SubmissionId> b =
      host->Submit(Request("same", prompt, 40), second, second->Tag("same"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(*a, *b);

  const absl::Status late = host->Cancel("same", *a);
  EXPECT_EQ(late.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(late.message()), HasSubstr(absl::StrCat("submission ", *a)));
  EXPECT_THAT(std::string(late.message()), HasSubstr("'same'"));
  ASSERT_TRUE(second->WaitFinished(1));
  EXPECT_EQ(second->Get("same").finish, FinishReason::kMaxTokens);
  EXPECT_EQ(second->Get("same").tokens.size(), 40u);

  // The submission in flight is cancelled by its own id.
  const absl::StatusOr<SubmissionId> c =
      host->Submit(Request("same", prompt, 400), third, third->Tag("same"));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(third->WaitStarted("same"));
  EXPECT_EQ(host->Cancel("same", *b).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(host->Cancel("same", *c).ok());
  ASSERT_TRUE(third->WaitFinished(1));
  EXPECT_EQ(third->Get("same").finish, FinishReason::kCancelled);
  EXPECT_EQ(host->Cancel("same", *c).code(), absl::StatusCode::kNotFound);
}

// The race itself: the final chunk's sink resubmits the id at once while another thread keeps
// cancelling the submission it knows; only that submission may ever end cancelled.
TEST(ReplicaHostTest, ConcurrentLateCancelsOnlyEndTheirOwnSubmission) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  constexpr int kRounds = 30;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<FinishReason> finishes;     // by round
  std::vector<SubmissionId> submissions;  // by round
  std::vector<bool> cancel_sent;          // by round: a cancel of that round's submission left
  const ReplicaRequest request = Request("race", {7, 8, 9}, 6);
  std::shared_ptr<StepSink> sink;
  sink = std::make_shared<EachChunkSink>([&](const ChunkView& chunk) {
    if (chunk.finish == FinishReason::kNone) return;
    std::lock_guard<std::mutex> lock(mu);
    finishes.push_back(chunk.finish);
    if (static_cast<int>(finishes.size()) < kRounds) {
      const absl::StatusOr<SubmissionId> next = host->Submit(request, sink, 0);
      EXPECT_TRUE(next.ok()) << next.status();
      submissions.push_back(next.ok() ? *next : 0);
      cancel_sent.push_back(false);
    }
    cv.notify_all();
  });
  {
    std::lock_guard<std::mutex> lock(mu);
    const absl::StatusOr<SubmissionId> first = host->Submit(request, sink, 0);
    ASSERT_TRUE(first.ok()) << first.status();
    submissions.push_back(*first);
    cancel_sent.push_back(false);
  }
  // Cancels every round's submission once, late: after a random delay, often after it ended.
  std::thread canceller([&] {
    std::mt19937_64 rng(7);
    for (int round = 0; round < kRounds; ++round) {
      SubmissionId target = 0;
      {
        std::unique_lock<std::mutex> lock(mu);
        if (!cv.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                         [&] { return static_cast<int>(submissions.size()) > round; })) {
          return;
        }
        target = submissions[round];
      }
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
      if (host->Cancel("race", target).ok()) {
        std::lock_guard<std::mutex> lock(mu);
        cancel_sent[round] = true;
      }
    }
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                            [&] { return static_cast<int>(finishes.size()) == kRounds; }));
  }
  canceller.join();
  ASSERT_TRUE(host->WaitIdle(kWait));
  std::lock_guard<std::mutex> lock(mu);
  for (int round = 0; round < kRounds; ++round) {
    if (!cancel_sent[round]) {
      EXPECT_EQ(finishes[round], FinishReason::kMaxTokens) << "round " << round;
    }
  }
}

// An engine that fails ends its requests UNAVAILABLE (so the coordinator fails them over), a
// deliver_at_end request with the tokens it held, then advertises no credit and refuses new
// requests, naming the replica and the original failure.
TEST(ReplicaHostTest, FailedEngineEndsItsRequestsUnavailableAndTakesNoMore) {
  // The first forward pass waits until both requests are submitted, so the failure (the 30th
  // pass) comes while both run, however late this thread gets a CPU.
  absl::Notification submitted;
  auto host = testing::LoadFailingHost("r0", testing::TinyModelDir(), /*fail_at=*/30, Options(),
                                       &submitted);
  ASSERT_TRUE(host.ok()) << host.status();
  std::mt19937_64 rng(8);
  const auto collector = std::make_shared<Collector>();
  std::vector<ReplicaRequest> requests = {Request("f1", RandomPrompt(rng, 9), 50),
                                          Request("f2", RandomPrompt(rng, 9), 50)};
  requests[1].deliver_at_end = true;
  const std::vector<int32_t> held_expected = EngineTokens(requests[1]);
  for (const ReplicaRequest& request : requests) {
    const bool accepted =
        (*host)->Submit(request, collector, collector->Tag(request.request_id)).ok();
    if (!accepted) submitted.Notify();  // the host must not be left waiting
    ASSERT_TRUE(accepted);
  }
  submitted.Notify();
  ASSERT_TRUE(collector->WaitFinished(2));
  for (const char* id : {"f1", "f2"}) {
    const Collector::Result got = collector->Get(id);
    EXPECT_EQ(got.status.code(), absl::StatusCode::kUnavailable) << id << ": " << got.status;
    EXPECT_THAT(std::string(got.status.message()), HasSubstr("replica 'r0'"));
    EXPECT_THAT(std::string(got.status.message()), HasSubstr("injected failure"));
    EXPECT_EQ(got.finish, FinishReason::kCancelled) << id;
    EXPECT_LT(got.tokens.size(), 50u) << id;
  }
  EXPECT_FALSE(collector->Get("f1").tokens.empty());  // it ran before the failure
  const Collector::Result held = collector->Get("f2");
  EXPECT_EQ(held.chunks, 2);  // its first token, then the rest with the failure
  ASSERT_GT(held.tokens.size(), 1u);
  EXPECT_EQ(held.tokens, std::vector<int32_t>(held_expected.begin(),
                                              held_expected.begin() + held.tokens.size()));

  EXPECT_EQ((*host)->failure().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE((*host)->WaitIdle(kWait));
  const ReplicaCounters c = (*host)->counters();
  EXPECT_EQ(c.free_token_credit, 0);
  EXPECT_EQ(c.running, 0);
  EXPECT_EQ(c.waiting, 0);
  const absl::Status refused =
      (*host)->Submit(Request("late", {5, 6}, 4), collector, collector->Tag("late")).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("replica 'r0'"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("injected failure"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("'late' not admitted"));
  EXPECT_EQ(collector->Get("late").chunks, 0);
}

// Idle seconds: the time the step thread waited with nothing to run, the wait in progress
// included (a starved replica's counter grows without a wake-up); never time in steps.
TEST(ReplicaHostTest, IdleSecondsCountOnlyTimeWithoutWork) {
  const absl::Time start = absl::Now();
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  absl::SleepFor(absl::Milliseconds(50));
  const ReplicaCounters before = host->counters();
  EXPECT_GE(before.idle_seconds, 0.04);
  EXPECT_LE(before.idle_seconds, absl::ToDoubleSeconds(absl::Now() - start));

  std::mt19937_64 rng(3);
  const auto collector = std::make_shared<Collector>();
  ASSERT_TRUE(
      host->Submit(Request("a", RandomPrompt(rng, 13), 12), collector, collector->Tag("a")).ok());
  ASSERT_TRUE(collector->WaitFinished(1));
  ASSERT_TRUE(host->WaitIdle(kWait));
  const ReplicaCounters ran = host->counters();
  EXPECT_GT(ran.busy_seconds, 0);
  EXPECT_GE(ran.idle_seconds, before.idle_seconds);
  EXPECT_LE(ran.idle_seconds + ran.busy_seconds, absl::ToDoubleSeconds(absl::Now() - start));

  absl::SleepFor(absl::Milliseconds(50));
  const ReplicaCounters after = host->counters();
  EXPECT_GE(after.idle_seconds - ran.idle_seconds, 0.04);
  EXPECT_EQ(after.busy_seconds, ran.busy_seconds);
}

// The per-step counters the heartbeats carry: batch occupancy, queue, KV and credit while
// requests run and wait, and back to idle after they are cancelled.
TEST(ReplicaHostTest, CountersFollowAdmissionsStepsAndCredit) {
  engine::EngineOptions options = Options();
  options.scheduler.max_running = 2;
  options.kv_block_size = 16;
  options.kv_num_blocks = 64;  // 1024 tokens
  auto host = LoadHost(options);
  ASSERT_NE(host, nullptr);
  ReplicaCounters c = host->counters();
  EXPECT_EQ(c.kv_blocks_total, 64);
  EXPECT_EQ(c.free_token_credit, 1024);
  EXPECT_EQ(c.running + c.waiting + c.kv_blocks_used + c.steps, 0);

  std::mt19937_64 rng(9);
  const auto collector = std::make_shared<Collector>();
  constexpr int kRequests = 4;
  constexpr int64_t kPrompt = 10, kMaxNew = 100;  // each reserves 110 tokens
  for (int i = 0; i < kRequests; ++i) {
    const std::string id = "c" + std::to_string(i);
    ASSERT_TRUE(host->Submit(Request(id, RandomPrompt(rng, kPrompt), kMaxNew), collector,
                             collector->Tag(id))
                    .ok());
  }
  // Two run (max_running), two wait in the engine's queue.
  bool seen = false;
  for (absl::Time until = absl::Now() + kWait; !seen && absl::Now() < until;) {
    c = host->counters();
    seen = c.running == 2 && c.waiting == 2;
    if (!seen) absl::SleepFor(absl::Microseconds(200));
  }
  ASSERT_TRUE(seen) << "running " << c.running << ", waiting " << c.waiting;
  EXPECT_GT(c.steps, 0);
  EXPECT_GT(c.busy_seconds, 0);
  EXPECT_GE(c.kv_blocks_used, 2);  // at least one block per running sequence
  EXPECT_LE(c.kv_blocks_used, 2 * 7);
  EXPECT_EQ(c.prompt_tokens, kRequests * kPrompt);
  EXPECT_EQ(c.free_token_credit, 1024 - kRequests * (kPrompt + kMaxNew));
  EXPECT_EQ(c.reserved_tokens, kRequests * (kPrompt + kMaxNew));

  for (int i = 0; i < kRequests; ++i) {
    const absl::Status s = host->Cancel("c" + std::to_string(i));
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kNotFound) << s;
  }
  ASSERT_TRUE(collector->WaitFinished(kRequests));
  ASSERT_TRUE(host->WaitIdle(kWait));
  int64_t delivered = 0;
  for (int i = 0; i < kRequests; ++i) {
    delivered += static_cast<int64_t>(collector->Get("c" + std::to_string(i)).tokens.size());
  }
  c = host->counters();
  EXPECT_EQ(c.generated_tokens, delivered);
  EXPECT_EQ(c.running, 0);
  EXPECT_EQ(c.waiting, 0);
  EXPECT_EQ(c.kv_blocks_used, 0);
  EXPECT_EQ(c.free_token_credit, 1024);
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
    const auto collector = std::make_shared<Collector>();
    ASSERT_TRUE(host->Submit(full, collector, collector->Tag(tag)).ok());
    ASSERT_TRUE(collector->WaitFinished(1));
    const Collector::Result uninterrupted = collector->Get(tag);
    ASSERT_EQ(uninterrupted.tokens.size(), 15u);
    ASSERT_TRUE(host->WaitIdle(kWait));

    const int64_t k = 6;
    ReplicaRequest resumed = full;
    resumed.request_id = tag + "-resumed";
    resumed.resume_tokens.assign(uninterrupted.tokens.begin(), uninterrupted.tokens.begin() + k);
    ASSERT_TRUE(host->Submit(resumed, collector, collector->Tag(resumed.request_id)).ok());
    ASSERT_TRUE(collector->WaitFinished(2));
    const Collector::Result rest = collector->Get(resumed.request_id);
    EXPECT_EQ(rest.first_index, k) << tag;
    EXPECT_EQ(rest.prompt_tokens, 11) << tag;
    EXPECT_EQ(rest.finish, uninterrupted.finish) << tag;
    EXPECT_EQ(rest.tokens,
              std::vector<int32_t>(uninterrupted.tokens.begin() + k, uninterrupted.tokens.end()))
        << tag;
  }
}

// deliver_at_end: the first step's token at once, every later one with the end (two chunks),
// equal to the streamed output; a resumed request holds from its own first token on.
TEST(ReplicaHostTest, DeliverAtEndHandsTheFirstTokenAtOnceAndTheRestWithTheEnd) {
  auto host = LoadHost();
  ASSERT_NE(host, nullptr);
  std::mt19937_64 rng(12);
  ReplicaRequest full = Request("held", RandomPrompt(rng, 9), 14);
  full.deliver_at_end = true;
  const std::vector<int32_t> expected = EngineTokens(full);
  const auto collector = std::make_shared<Collector>();
  ASSERT_TRUE(host->Submit(full, collector, collector->Tag("held")).ok());
  ASSERT_TRUE(collector->WaitFinished(1));
  const Collector::Result got = collector->Get("held");
  EXPECT_EQ(got.chunks, 2);
  EXPECT_EQ(got.first_index, 0);
  EXPECT_EQ(got.tokens, expected);
  EXPECT_EQ(got.finish, FinishReason::kMaxTokens);

  const int64_t k = 5;
  ReplicaRequest resumed = full;
  resumed.request_id = "held-resumed";
  resumed.resume_tokens.assign(expected.begin(), expected.begin() + k);
  ASSERT_TRUE(host->Submit(resumed, collector, collector->Tag(resumed.request_id)).ok());
  ASSERT_TRUE(collector->WaitFinished(2));
  const Collector::Result rest = collector->Get(resumed.request_id);
  EXPECT_EQ(rest.chunks, 2);
  EXPECT_EQ(rest.first_index, k);
  EXPECT_EQ(rest.tokens, std::vector<int32_t>(expected.begin() + k, expected.end()));
  ASSERT_TRUE(host->WaitIdle(kWait));
  EXPECT_EQ(host->counters().generated_tokens, 14 + 14 - k);
}

// Tokens a deliver_at_end request holds are generated output: they go out with its final chunk
// when it is cancelled and when the host shuts down under it, never lost, and are counted as
// generated when they go out.
TEST(ReplicaHostTest, HeldTokensGoOutWithACancelAndWithAShutdown) {
  std::mt19937_64 rng(13);
  ReplicaRequest long_request = Request("long", RandomPrompt(rng, 5), 400);
  long_request.deliver_at_end = true;
  const std::vector<int32_t> expected = EngineTokens(long_request);
  for (const bool shutdown : {false, true}) {
    auto host = LoadHost();
    ASSERT_NE(host, nullptr);
    const auto collector = std::make_shared<Collector>();
    ASSERT_TRUE(host->Submit(long_request, collector, collector->Tag("long")).ok());
    ASSERT_TRUE(collector->WaitStarted("long"));
    for (absl::Time until = absl::Now() + kWait;
         host->counters().steps < 20 && absl::Now() < until;) {
      absl::SleepFor(absl::Microseconds(200));
    }
    if (shutdown) {
      host.reset();
    } else {
      ASSERT_TRUE(host->Cancel("long").ok());
    }
    ASSERT_TRUE(collector->WaitFinished(1));
    const Collector::Result got = collector->Get("long");
    EXPECT_EQ(got.finish, FinishReason::kCancelled);
    EXPECT_EQ(got.status.code(), shutdown ? absl::StatusCode::kUnavailable : absl::StatusCode::kOk);
    EXPECT_EQ(got.chunks, 2) << "shutdown " << shutdown;
    ASSERT_GE(got.tokens.size(), 20u) << "shutdown " << shutdown;
    ASSERT_LT(got.tokens.size(), 400u) << "shutdown " << shutdown;
    EXPECT_EQ(got.tokens,
              std::vector<int32_t>(expected.begin(), expected.begin() + got.tokens.size()));
    if (!shutdown) {
      ASSERT_TRUE(host->WaitIdle(kWait));
      EXPECT_EQ(host->counters().generated_tokens, static_cast<int64_t>(got.tokens.size()));
    }
  }
}

TEST(ReplicaHostTest, BadRequestsAreRejectedWithTheField) {
  engine::EngineOptions options = Options();
  options.kv_block_size = 4;
  options.kv_num_blocks = 16;  // 64 tokens
  auto host = LoadHost(options);
  ASSERT_NE(host, nullptr);
  const auto collector = std::make_shared<Collector>();
  auto expect = [&](ReplicaRequest r, absl::StatusCode code, const std::string& culprit) {
    const absl::Status s = host->Submit(std::move(r), collector, collector->Tag("bad")).status();
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

  ASSERT_TRUE(host->Submit(Request("dup", {5, 6}, 30), collector, collector->Tag("dup")).ok());
  expect(Request("dup", {5, 6}, 3), absl::StatusCode::kAlreadyExists, "'dup'");
  ASSERT_TRUE(collector->WaitFinished(1));
  EXPECT_EQ(collector->Get("bad").chunks, 0);
}

}  // namespace
}  // namespace rackserve::worker
