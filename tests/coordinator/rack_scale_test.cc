// The rack at scale, as real processes on loopback (rackserve-coordinator + rackserve-worker, CPU
// backend, tiny generated model): every output of 500 batched and 60 streamed requests equals the
// single-process engine's greedy output and the audit adds up; a worker SIGKILLed under 200 live
// streams loses no request, repeats no token and leaves the ready set; an overloaded rack refuses
// with RESOURCE_EXHAUSTED and a retry-after hint while every admitted request completes.
#include <atomic>
#include <charconv>
#include <functional>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/rack_harness.h"

namespace rackserve::coordinator {
namespace {

using testing::GreedyReference;
using ::testing::HasSubstr;
using testing::TestRack;
using testing::TestRackOptions;

constexpr absl::Duration kCallDeadline = absl::Seconds(90);

TestRackOptions Options(int workers, std::vector<std::string> coordinator_flags = {},
                        std::vector<std::string> worker_flags = {}) {
  TestRackOptions options;
  options.coordinator_binary = RACKSERVE_COORDINATOR_BINARY;
  options.worker_binary = RACKSERVE_WORKER_BINARY;
  options.workers = workers;
  options.coordinator_flags = std::move(coordinator_flags);
  options.worker_flags = std::move(worker_flags);
  return options;
}

// Request i: a short prompt of 3..10 token ids and 8..24 new tokens, EOS ignored.
std::vector<int32_t> Prompt(int i) {
  std::vector<int32_t> prompt;
  for (int k = 0; k < 3 + i % 8; ++k) prompt.push_back(1 + (i * 131 + k * 17) % 511);
  return prompt;
}
int64_t MaxNew(int i) { return 8 + i % 17; }

v1::GenerateRequest Request(const std::string& id, int i, int64_t max_new) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  for (const int32_t t : Prompt(i)) r.add_prompt_token_ids(t);
  r.mutable_sampling()->set_max_new_tokens(max_new);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

std::vector<std::vector<int32_t>> Reference(const TestRack& rack, int n,
                                            const std::function<int64_t(int)>& max_new) {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int64_t> lengths;
  for (int i = 0; i < n; ++i) {
    prompts.push_back(Prompt(i));
    lengths.push_back(max_new(i));
  }
  absl::StatusOr<std::vector<std::vector<int32_t>>> reference =
      GreedyReference(rack.model_dir(), prompts, lengths);
  EXPECT_TRUE(reference.ok()) << reference.status();
  return reference.ok() ? *std::move(reference) : std::vector<std::vector<int32_t>>(n);
}

// One Generate stream read to its end.
struct Streamed {
  std::vector<int32_t> tokens;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  bool contiguous = true;  // every chunk's first_index continues the tokens before it
  grpc::Status status;
  int64_t retry_after_ms = -1;  // the trailing "retry-after-ms", when present
};

Streamed Generate(v1::Rack::Stub& client, const v1::GenerateRequest& request) {
  Streamed out;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
  std::unique_ptr<grpc::ClientReader<v1::TokenChunk>> reader = client.Generate(&context, request);
  v1::TokenChunk chunk;
  while (reader->Read(&chunk)) {
    out.contiguous =
        out.contiguous && chunk.first_index() == static_cast<int64_t>(out.tokens.size());
    out.tokens.insert(out.tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
    if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) out.finish = chunk.finish_reason();
  }
  out.status = reader->Finish();
  const auto& trailers = context.GetServerTrailingMetadata();
  if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
    int64_t ms = 0;
    const char* end = it->second.data() + it->second.size();
    if (std::from_chars(it->second.data(), end, ms).ptr == end) out.retry_after_ms = ms;
  }
  return out;
}

int64_t Total(const std::vector<std::vector<int32_t>>& outputs) {
  int64_t total = 0;
  for (const auto& t : outputs) total += static_cast<int64_t>(t.size());
  return total;
}

TEST(RackScaleTest, BatchAndStreamsOnThreeWorkersEqualTheEngineAndTheAuditHolds) {
  absl::StatusOr<std::unique_ptr<TestRack>> started = TestRack::Start(Options(3));
  ASSERT_TRUE(started.ok()) << started.status();
  TestRack& rack = **started;
  constexpr int kBatch = 500;
  constexpr int kStreams = 60;
  const std::vector<std::vector<int32_t>> reference = Reference(rack, kBatch + kStreams, MaxNew);

  std::vector<std::vector<int32_t>> outputs(kBatch + kStreams);
  std::vector<v1::FinishReason> finishes(kBatch + kStreams, v1::FINISH_REASON_UNSPECIFIED);
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
    auto stream = rack.client().SubmitBatch(&context);
    for (int i = 0; i < kBatch; ++i) {
      EXPECT_TRUE(stream->Write(Request(absl::StrCat("b", i), i, MaxNew(i))));
    }
    stream->WritesDone();
    v1::Completion c;
    while (stream->Read(&c)) {
      EXPECT_EQ(c.error_code(), 0) << c.request_id() << ": " << c.error_message();
      const int i = std::stoi(c.request_id().substr(1));
      outputs[i].assign(c.token_ids().begin(), c.token_ids().end());
      finishes[i] = c.finish_reason();
      EXPECT_EQ(c.prompt_tokens(), static_cast<int64_t>(Prompt(i).size())) << c.request_id();
    }
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
  });
  for (int s = 0; s < kStreams; ++s) {
    threads.emplace_back([&, s] {
      const int i = kBatch + s;
      const Streamed got = Generate(rack.client(), Request(absl::StrCat("g", s), i, MaxNew(i)));
      EXPECT_TRUE(got.status.ok()) << "g" << s << ": " << got.status.error_message();
      EXPECT_TRUE(got.contiguous) << "g" << s;
      outputs[i] = got.tokens;
      finishes[i] = got.finish;
    });
  }
  for (std::thread& t : threads) t.join();

  int64_t prompt_tokens = 0;
  for (int i = 0; i < kBatch + kStreams; ++i) {
    EXPECT_EQ(outputs[i], reference[i]) << "request " << i;
    EXPECT_EQ(finishes[i], v1::FINISH_REASON_MAX_TOKENS) << "request " << i;
    prompt_tokens += static_cast<int64_t>(Prompt(i).size());
  }
  const int64_t tokens = Total(reference);
  // The audit: once the heartbeats caught up, the workers' counts equal the delivered tokens.
  v1::RackStats stats;
  for (const absl::Time until = absl::Now() + absl::Seconds(15); absl::Now() < until;) {
    stats = rack.Stats();
    if (stats.worker_generated_tokens_total() == tokens) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(stats.rack().generated_tokens_total(), tokens);
  EXPECT_EQ(stats.worker_generated_tokens_total(), tokens) << rack.Logs();
  EXPECT_EQ(stats.rack().prompt_tokens_total(), prompt_tokens);
  EXPECT_EQ(stats.requests_completed(), kBatch + kStreams);
}

TEST(RackScaleTest, WorkerKilledUnder200StreamsLosesAndRepeatsNothing) {
  absl::StatusOr<std::unique_ptr<TestRack>> started =
      TestRack::Start(Options(3, {"--heartbeat-timeout-s", "2"}));
  ASSERT_TRUE(started.ok()) << started.status();
  TestRack& rack = **started;
  constexpr int kStreams = 200;
  // Long enough that the streams are still running when the killer sees the twentieth of the
  // tokens out, even when it waits for a CPU (with 48 tokens each, every stream once ended first).
  constexpr int64_t kMaxNew = 192;
  const std::vector<std::vector<int32_t>> reference =
      Reference(rack, kStreams, [](int) { return kMaxNew; });
  const int64_t tokens = Total(reference);

  const absl::Time start = absl::Now();
  std::vector<Streamed> got(kStreams);
  std::atomic<int> completed = 0;
  int completed_at_kill = 0;
  // SIGKILL vm0's worker once a twentieth of the tokens are out; watching from before the first
  // stream starts (starting 200 threads takes a while on a loaded machine).
  std::thread killer([&] {
    for (const absl::Time until = absl::Now() + kCallDeadline; absl::Now() < until;) {
      if (rack.Stats().rack().generated_tokens_total() >= tokens / 20) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    rack.worker(0).Kill();
    completed_at_kill = completed;
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      got[i] = Generate(rack.client(), Request(absl::StrCat("k", i), i, kMaxNew));
      ++completed;
    });
  }
  killer.join();
  for (std::thread& t : threads) t.join();
  const absl::Duration elapsed = absl::Now() - start;

  EXPECT_LT(completed_at_kill, kStreams) << "the worker died after every stream ended";
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_TRUE(got[i].status.ok()) << "k" << i << ": " << got[i].status.error_message();
    EXPECT_TRUE(got[i].contiguous) << "k" << i << " repeated or skipped a token";
    EXPECT_EQ(got[i].tokens, reference[i]) << "k" << i;
    EXPECT_EQ(got[i].finish, v1::FINISH_REASON_MAX_TOKENS) << "k" << i;
  }
  EXPECT_LT(elapsed, absl::Seconds(60));
  // The coordinator counted every token delivered once, failover included.
  EXPECT_EQ(rack.Stats().rack().generated_tokens_total(), tokens);

  // vm0's replica leaves the ready set; the others stay in it.
  bool left = false;
  v1::Topology topology;
  for (const absl::Time until = absl::Now() + absl::Seconds(10); !left && absl::Now() < until;) {
    absl::StatusOr<v1::Topology> t = rack.Topology();
    ASSERT_TRUE(t.ok()) << t.status();
    topology = *std::move(t);
    left = true;
    for (const v1::Replica& r : topology.replicas()) {
      const bool on_vm0 = r.ranks_size() > 0 && r.ranks(0).vm() == "vm0";
      left = left && (r.state() == "ready") != on_vm0;
    }
    if (!left) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(left) << topology.DebugString();
}

TEST(RackScaleTest, OverloadIsRefusedWithARetryHintAndAdmittedRequestsComplete) {
  absl::StatusOr<std::unique_ptr<TestRack>> started =
      TestRack::Start(Options(1, {"--queue-limit", "4"}, {"--kv-cache-mb", "1"}));
  ASSERT_TRUE(started.ok()) << started.status();
  TestRack& rack = **started;
  constexpr int kFlood = 160;
  constexpr int64_t kMaxNew = 24;
  const std::vector<std::vector<int32_t>> reference =
      Reference(rack, kFlood, [](int) { return kMaxNew; });

  std::vector<Streamed> got(kFlood);
  std::latch go(kFlood);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFlood; ++i) {
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      got[i] = Generate(rack.client(), Request(absl::StrCat("o", i), i, kMaxNew));
    });
  }
  for (std::thread& t : threads) t.join();

  int refused = 0, admitted = 0;
  for (int i = 0; i < kFlood; ++i) {
    if (got[i].status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      EXPECT_GT(got[i].retry_after_ms, 0) << "o" << i << ": " << got[i].status.error_message();
      EXPECT_THAT(got[i].status.error_message(), HasSubstr("retry after"));
      EXPECT_TRUE(got[i].tokens.empty()) << "o" << i;
      continue;
    }
    ++admitted;
    EXPECT_TRUE(got[i].status.ok()) << "o" << i << ": " << got[i].status.error_message();
    EXPECT_EQ(got[i].tokens, reference[i]) << "o" << i;
    EXPECT_EQ(got[i].finish, v1::FINISH_REASON_MAX_TOKENS) << "o" << i;
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(admitted, 4);  // more than the queue: the worker's credit admitted some at once
  // The rack still serves once the flood is over.
  const Streamed after = Generate(rack.client(), Request("after", 0, kMaxNew));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens, reference[0]);
}

}  // namespace
}  // namespace rackserve::coordinator
