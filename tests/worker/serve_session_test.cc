// ServeSession without gRPC: the outbox columns (handles/counts/token_ids, consecutive chunks of
// one handle sharing an entry; a step's chunks in one DeliverStep call), ends after each
// submission's last token, Take()'s timeout, wake-up and kDone, refusals as ends, Cancel() and
// CancelAll() over a real replica of the tiny model.
#include "worker/serve_session.h"

#include <span>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/test_model.h"

namespace rackserve::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);

// One chunk of `handle`'s submission, as a step with only it would hand it over.
void Deliver(ServeSession& session, uint64_t handle, std::vector<int32_t> token_ids,
             int64_t first_index) {
  ChunkView chunk;
  chunk.tag = handle;
  chunk.token_ids = token_ids;
  chunk.first_index = first_index;
  session.DeliverStep(std::span<const ChunkView>(&chunk, 1));
}

TEST(ServeSessionOutboxTest, ChunksBecomeColumnsInOrder) {
  ReplicaRegistry registry;
  const std::shared_ptr<ServeSession> session = ServeSession::Create(&registry);
  v1::ServeOutbound out;
  EXPECT_EQ(session->Take(absl::Milliseconds(5), &out), ServeSession::TakeResult::kTimedOut);

  Deliver(*session, 7, {1, 2}, 0);
  Deliver(*session, 7, {3}, 2);
  Deliver(*session, 8, {4, 5}, 0);
  Deliver(*session, 8, {}, 2);  // nothing to write
  Deliver(*session, 7, {6}, 3);
  ASSERT_EQ(session->Take(absl::ZeroDuration(), &out), ServeSession::TakeResult::kTaken);
  EXPECT_THAT(out.handles(), ElementsAre(7, 8, 7));
  EXPECT_THAT(out.counts(), ElementsAre(3, 2, 1));
  EXPECT_THAT(out.token_ids(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_TRUE(out.ends().empty());

  // Taken whole: the next batch starts empty, in the same (reused) message.
  Deliver(*session, 8, {9}, 2);
  ASSERT_EQ(session->Take(absl::ZeroDuration(), &out), ServeSession::TakeResult::kTaken);
  EXPECT_THAT(out.handles(), ElementsAre(8));
  EXPECT_THAT(out.counts(), ElementsAre(1));
  EXPECT_THAT(out.token_ids(), ElementsAre(9));
  EXPECT_EQ(session->Take(absl::Milliseconds(5), &out), ServeSession::TakeResult::kTimedOut);
  EXPECT_TRUE(out.handles().empty());
}

TEST(ServeSessionOutboxTest, OneStepsChunksBecomeColumnsInOneCall) {
  ReplicaRegistry registry;
  const std::shared_ptr<ServeSession> session = ServeSession::Create(&registry);
  v1::ServeOutbound out;
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  std::vector<ChunkView> step(3);
  step[0].tag = 7;
  step[0].token_ids = std::span<const int32_t>(tokens).subspan(0, 1);
  step[1].tag = 8;
  step[1].token_ids = std::span<const int32_t>(tokens).subspan(1, 2);
  step[1].first_index = 5;
  step[2].tag = 9;
  step[2].token_ids = std::span<const int32_t>(tokens).subspan(3, 1);
  session->DeliverStep(step);
  ASSERT_EQ(session->Take(absl::ZeroDuration(), &out), ServeSession::TakeResult::kTaken);
  EXPECT_THAT(out.handles(), ElementsAre(7, 8, 9));
  EXPECT_THAT(out.counts(), ElementsAre(1, 2, 1));
  EXPECT_THAT(out.token_ids(), ElementsAre(1, 2, 3, 4));
  EXPECT_TRUE(out.ends().empty());
}

TEST(ServeSessionOutboxTest, TakeWakesOnTheFirstChunkAndEndsWhenInputCloses) {
  ReplicaRegistry registry;
  const std::shared_ptr<ServeSession> session = ServeSession::Create(&registry);
  std::thread producer([&] {
    absl::SleepFor(absl::Milliseconds(20));
    Deliver(*session, 1, {5}, 0);
  });
  v1::ServeOutbound out;
  const absl::Time start = absl::Now();
  ASSERT_EQ(session->Take(kWait, &out), ServeSession::TakeResult::kTaken);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(out.token_ids(), ElementsAre(5));
  producer.join();

  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(20));
    session->CloseInput();
  });
  EXPECT_EQ(session->Take(kWait, &out), ServeSession::TakeResult::kDone);
  closer.join();
}

class ServeSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::EngineOptions options;
    options.num_threads = 1;
    auto host = ReplicaHost::Load("r0", testing::TinyModelDir(), options);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = host->get();
    ASSERT_TRUE(registry_.Add(*std::move(host)).ok());
  }

  static v1::ReplicaRequest Request(uint64_t handle, int64_t max_new) {
    v1::ReplicaRequest r;
    r.set_replica_id("r0");
    r.set_request_id("q" + std::to_string(handle));
    r.set_handle(handle);
    for (int i = 0; i < 7; ++i) r.add_prompt_token_ids(static_cast<int32_t>(3 + 17 * i + handle));
    r.mutable_sampling()->set_max_new_tokens(max_new);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }

  struct Collected {
    std::vector<int32_t> tokens;
    std::vector<v1::SubmissionEnd> ends;
    bool token_after_end = false;
  };
  // Takes until kDone (or `until_ends` ends in all), checking every batch's layout.
  absl::flat_hash_map<uint64_t, Collected> TakeAll(ServeSession& session, size_t until_ends) {
    absl::flat_hash_map<uint64_t, Collected> got;
    size_t ends = 0;
    v1::ServeOutbound out;
    for (const absl::Time deadline = absl::Now() + kWait; absl::Now() < deadline;) {
      const ServeSession::TakeResult result = session.Take(absl::Milliseconds(100), &out);
      if (result == ServeSession::TakeResult::kDone) break;
      if (result == ServeSession::TakeResult::kTimedOut) continue;
      EXPECT_EQ(out.handles_size(), out.counts_size());
      int offset = 0;
      for (int i = 0; i < out.handles_size(); ++i) {
        Collected& c = got[out.handles(i)];
        EXPECT_GT(out.counts(i), 0u);
        if (!c.ends.empty()) c.token_after_end = true;
        for (uint32_t k = 0; k < out.counts(i); ++k) c.tokens.push_back(out.token_ids(offset++));
      }
      EXPECT_EQ(offset, out.token_ids_size());
      for (const v1::SubmissionEnd& end : out.ends()) got[end.handle()].ends.push_back(end);
      ends += static_cast<size_t>(out.ends_size());
      if (ends >= until_ends) break;
    }
    return got;
  }

  ReplicaRegistry registry_;
  ReplicaHost* host_ = nullptr;
};

TEST_F(ServeSessionTest, EverySubmissionEndsOnceAfterItsLastToken) {
  const std::shared_ptr<ServeSession> session = ServeSession::Create(&registry_);
  for (uint64_t h = 1; h <= 3; ++h) session->Submit(Request(h, static_cast<int64_t>(4 * h + 1)));
  v1::ReplicaRequest unknown = Request(4, 3);
  unknown.set_replica_id("r7");
  session->Submit(unknown);
  v1::ReplicaRequest resumed = Request(5, 8);
  resumed.add_resume_token_ids(11);
  resumed.add_resume_token_ids(12);
  session->Submit(resumed);
  session->CloseInput();
  const auto got = TakeAll(*session, /*until_ends=*/100);
  EXPECT_EQ(session->submissions_in_flight(), 0);

  for (uint64_t h = 1; h <= 3; ++h) {
    const Collected& c = got.at(h);
    ASSERT_EQ(c.ends.size(), 1u) << "handle " << h;
    EXPECT_FALSE(c.token_after_end) << "handle " << h;
    EXPECT_EQ(c.tokens.size(), 4 * h + 1);
    EXPECT_EQ(c.ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
    EXPECT_EQ(c.ends[0].prompt_tokens(), 7);
    EXPECT_EQ(c.ends[0].error_code(), 0);
  }
  const Collected& refused = got.at(4);
  ASSERT_EQ(refused.ends.size(), 1u);
  EXPECT_EQ(refused.ends[0].error_code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_THAT(refused.ends[0].error_message(), HasSubstr("'r7'"));
  EXPECT_TRUE(refused.tokens.empty());
  // Resumed: max_new_tokens counts the 2 resumed tokens.
  EXPECT_EQ(got.at(5).tokens.size(), 6u);
  EXPECT_EQ(got.at(5).ends.size(), 1u);
}

TEST_F(ServeSessionTest, CancelEndsOnlyThatHandle) {
  const std::shared_ptr<ServeSession> session = ServeSession::Create(&registry_);
  session->Submit(Request(1, 400));
  session->Submit(Request(2, 30));
  session->Cancel(1);
  session->Cancel(42);  // never submitted: ignored
  session->CloseInput();
  const auto got = TakeAll(*session, /*until_ends=*/100);
  ASSERT_EQ(got.at(1).ends.size(), 1u);
  EXPECT_EQ(got.at(1).ends[0].finish_reason(), v1::FINISH_REASON_CANCELLED);
  EXPECT_LT(got.at(1).tokens.size(), 400u);
  ASSERT_EQ(got.at(2).ends.size(), 1u);
  EXPECT_EQ(got.at(2).ends[0].finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(got.at(2).tokens.size(), 30u);
  EXPECT_FALSE(got.contains(42));
}

TEST_F(ServeSessionTest, CancelAllEndsEverySubmissionAndRefusesLaterOnes) {
  const std::shared_ptr<ServeSession> session = ServeSession::Create(&registry_);
  for (uint64_t h = 1; h <= 4; ++h) session->Submit(Request(h, 450));
  session->CancelAll();
  const auto got = TakeAll(*session, /*until_ends=*/100);
  for (uint64_t h = 1; h <= 4; ++h) {
    ASSERT_EQ(got.at(h).ends.size(), 1u) << "handle " << h;
    EXPECT_EQ(got.at(h).ends[0].finish_reason(), v1::FINISH_REASON_CANCELLED);
  }
  EXPECT_TRUE(host_->WaitIdle(kWait));
  EXPECT_LT(host_->counters().generated_tokens, 4 * 450);

  session->Submit(Request(5, 4));
  const auto late = TakeAll(*session, /*until_ends=*/1);
  ASSERT_EQ(late.at(5).ends.size(), 1u);
  EXPECT_EQ(late.at(5).ends[0].error_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(late.at(5).ends[0].error_message(), HasSubstr("'q5'"));
  EXPECT_EQ(host_->requests_in_flight(), 0);
}

}  // namespace
}  // namespace rackserve::worker
