#include "runtime/scheduler/scheduler.h"

#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::scheduler {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<int32_t> Prompt(int64_t n, int32_t first = 1) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

// A scheduler over its own allocator; Step() plays the engine: schedule, commit, and append a
// token (the step number) to every sequence that sampled.
class SchedulerTest : public ::testing::Test {
 protected:
  void Init(SchedulerOptions options, int block_size, int64_t num_blocks) {
    config_ = *kv::KvCacheConfig::Create(block_size, num_blocks);
    allocator_ = std::make_unique<kv::BlockAllocator>(num_blocks);
    scheduler_ = std::make_unique<Scheduler>(options, config_, allocator_.get());
    options_ = options;
  }

  StepPlan Step() {
    StepPlan plan = scheduler_->Schedule();
    CheckPlan(plan);
    scheduler_->Commit(plan);
    for (const ScheduledChunk& chunk : plan.chunks) {
      if (chunk.samples) scheduler_->AppendToken(chunk.seq->id, 1000 + steps_);
    }
    ++steps_;
    return plan;
  }

  void CheckPlan(const StepPlan& plan) {
    int64_t total = 0;
    for (const ScheduledChunk& chunk : plan.chunks) {
      EXPECT_GE(chunk.count, 1);
      EXPECT_EQ(chunk.start, chunk.seq->num_computed);
      EXPECT_LE(chunk.start + chunk.count, chunk.seq->num_tokens());
      EXPECT_EQ(chunk.samples, chunk.start + chunk.count == chunk.seq->num_tokens());
      EXPECT_GE(static_cast<int64_t>(chunk.seq->block_table.size()),
                config_.BlocksFor(chunk.start + chunk.count));
      EXPECT_EQ(chunk.seq->state, SequenceState::kRunning);
      total += chunk.count;
    }
    EXPECT_EQ(total, plan.num_tokens);
    EXPECT_LE(plan.num_tokens, options_.max_tokens_per_step);
    EXPECT_LE(scheduler_->num_running(), options_.max_running);
  }

  // The ids in a plan, in order.
  static std::vector<RequestId> Ids(const StepPlan& plan) {
    std::vector<RequestId> ids;
    for (const ScheduledChunk& chunk : plan.chunks) ids.push_back(chunk.seq->id);
    return ids;
  }

  SchedulerOptions options_;
  kv::KvCacheConfig config_;
  std::unique_ptr<kv::BlockAllocator> allocator_;
  std::unique_ptr<Scheduler> scheduler_;
  int32_t steps_ = 0;
};

TEST_F(SchedulerTest, PrefillThenDecode) {
  Init({.max_running = 8, .max_tokens_per_step = 64}, 4, 16);
  ASSERT_TRUE(scheduler_->Add(7, Prompt(10), 3).ok());
  EXPECT_EQ(scheduler_->num_waiting(), 1);
  EXPECT_TRUE(scheduler_->has_work());

  StepPlan prefill = Step();
  ASSERT_EQ(prefill.chunks.size(), 1u);
  EXPECT_EQ(prefill.chunks[0].start, 0);
  EXPECT_EQ(prefill.chunks[0].count, 10);
  EXPECT_TRUE(prefill.chunks[0].samples);
  EXPECT_EQ(scheduler_->num_running(), 1);

  StepPlan decode = Step();
  ASSERT_EQ(decode.chunks.size(), 1u);
  EXPECT_EQ(decode.chunks[0].start, 10);
  EXPECT_EQ(decode.chunks[0].count, 1);
  EXPECT_TRUE(decode.chunks[0].samples);

  const Sequence* seq = scheduler_->Find(7);
  ASSERT_NE(seq, nullptr);
  EXPECT_EQ(seq->num_tokens(), 12);
  EXPECT_EQ(seq->num_generated(), 2);
  EXPECT_EQ(seq->num_computed, 11);
  EXPECT_EQ(seq->block_table.size(), 3u);
  EXPECT_EQ(allocator_->num_free(), 13);

  ASSERT_TRUE(scheduler_->Remove(7).ok());
  EXPECT_EQ(allocator_->num_free(), 16);
  EXPECT_FALSE(scheduler_->has_work());
  EXPECT_EQ(scheduler_->Find(7), nullptr);
  EXPECT_TRUE(scheduler_->Schedule().empty());
}

TEST_F(SchedulerTest, ChunkedPrefillSplitsLongPromptContiguously) {
  Init({.max_running = 8, .max_tokens_per_step = 16, .chunked_prefill = true}, 4, 64);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(50), 4).ok());
  int64_t next = 0;
  for (int step = 0; step < 4; ++step) {
    StepPlan plan = Step();
    ASSERT_EQ(plan.chunks.size(), 1u);
    EXPECT_EQ(plan.chunks[0].start, next);
    EXPECT_EQ(plan.chunks[0].count, step < 3 ? 16 : 2);
    EXPECT_EQ(plan.chunks[0].samples, step == 3);
    next += plan.chunks[0].count;
  }
  EXPECT_EQ(next, 50);
  EXPECT_EQ(scheduler_->Find(1)->num_tokens(), 51);
}

TEST_F(SchedulerTest, ChunkedPrefillSharesBudgetWithDecodes) {
  Init({.max_running = 8, .max_tokens_per_step = 16, .chunked_prefill = true}, 4, 64);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(5), 8).ok());
  Step();  // 1 prefills
  ASSERT_TRUE(scheduler_->Add(2, Prompt(40), 4).ok());
  StepPlan plan = Step();
  EXPECT_THAT(Ids(plan), ElementsAre(1, 2));
  EXPECT_EQ(plan.chunks[0].count, 1);   // decode first
  EXPECT_EQ(plan.chunks[1].count, 15);  // prefill takes the rest of the budget
  EXPECT_FALSE(plan.chunks[1].samples);
  plan = Step();
  EXPECT_EQ(plan.chunks[1].start, 15);
  EXPECT_EQ(plan.chunks[1].count, 15);
}

TEST_F(SchedulerTest, WithoutChunkingATooLongPromptWaits) {
  Init({.max_running = 8, .max_tokens_per_step = 32, .chunked_prefill = false}, 4, 64);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(20), 4).ok());
  ASSERT_TRUE(scheduler_->Add(2, Prompt(20), 4).ok());
  ASSERT_TRUE(scheduler_->Add(3, Prompt(5), 4).ok());
  StepPlan first = Step();
  // 2 does not fit in the 12 tokens left; FCFS keeps 3 behind it.
  EXPECT_THAT(Ids(first), ElementsAre(1));
  EXPECT_EQ(first.chunks[0].count, 20);
  EXPECT_EQ(scheduler_->num_waiting(), 2);
  StepPlan second = Step();
  EXPECT_THAT(Ids(second), ElementsAre(1, 2, 3));
  EXPECT_EQ(second.chunks[1].count, 20);
  EXPECT_TRUE(second.chunks[1].samples);
  EXPECT_EQ(second.num_tokens, 26);
}

TEST_F(SchedulerTest, RunningSequencesDecodeBeforeAdmission) {
  Init({.max_running = 8, .max_tokens_per_step = 8}, 4, 64);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(3), 8).ok());
  ASSERT_TRUE(scheduler_->Add(2, Prompt(3), 8).ok());
  Step();
  ASSERT_TRUE(scheduler_->Add(3, Prompt(30), 8).ok());
  StepPlan plan = Step();
  EXPECT_THAT(Ids(plan), ElementsAre(1, 2, 3));
  EXPECT_EQ(plan.chunks[0].count, 1);
  EXPECT_EQ(plan.chunks[1].count, 1);
  EXPECT_EQ(plan.chunks[2].count, 6);
}

TEST_F(SchedulerTest, MaxRunningCapsTheBatch) {
  Init({.max_running = 2, .max_tokens_per_step = 100}, 4, 64);
  for (RequestId id = 1; id <= 4; ++id) ASSERT_TRUE(scheduler_->Add(id, Prompt(4), 4).ok());
  EXPECT_THAT(Ids(Step()), ElementsAre(1, 2));
  EXPECT_THAT(Ids(Step()), ElementsAre(1, 2));
  EXPECT_EQ(scheduler_->num_waiting(), 2);
  ASSERT_TRUE(scheduler_->Remove(1).ok());
  EXPECT_THAT(Ids(Step()), ElementsAre(2, 3));
}

TEST_F(SchedulerTest, AdmissionIsFirstComeFirstServed) {
  // Block-limited: 4 blocks of 4 tokens. 1 takes 3 blocks, so 2 (2 blocks) waits and so does 3
  // (1 block) although it would fit.
  Init({.max_running = 8, .max_tokens_per_step = 100}, 4, 4);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(12), 4).ok());
  ASSERT_TRUE(scheduler_->Add(2, Prompt(8), 4).ok());
  ASSERT_TRUE(scheduler_->Add(3, Prompt(2), 2).ok());
  EXPECT_THAT(Ids(Step()), ElementsAre(1));
  EXPECT_EQ(scheduler_->num_waiting(), 2);
  ASSERT_TRUE(scheduler_->Remove(1).ok());
  EXPECT_THAT(Ids(Step()), ElementsAre(2, 3));
}

TEST_F(SchedulerTest, PreemptsLatestArrivalWhenBlocksRunOut) {
  // 6 blocks of 2 tokens. Two sequences of 5-token prompts take 3 blocks each; the first to need a
  // new block (the first, at position 6) evicts the second.
  Init({.max_running = 8, .max_tokens_per_step = 100}, 2, 6);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(5), 6).ok());
  ASSERT_TRUE(scheduler_->Add(2, Prompt(5), 6).ok());
  EXPECT_THAT(Ids(Step()), ElementsAre(1, 2));  // positions 0..4
  EXPECT_EQ(allocator_->num_free(), 0);
  EXPECT_THAT(Ids(Step()), ElementsAre(1, 2));  // position 5: still in block 2
  const std::vector<int32_t> victim_blocks = scheduler_->Find(2)->block_table;

  StepPlan plan = Step();  // position 6 needs a 4th block
  EXPECT_THAT(plan.preempted, ElementsAre(2));
  EXPECT_THAT(Ids(plan), ElementsAre(1));
  const Sequence* victim = scheduler_->Find(2);
  EXPECT_EQ(victim->state, SequenceState::kWaiting);
  EXPECT_EQ(victim->num_computed, 0);
  EXPECT_THAT(victim->block_table, IsEmpty());
  EXPECT_EQ(victim->num_preemptions, 1);
  EXPECT_EQ(victim->num_tokens(), 7);  // prompt + 2 generated, kept for recompute
  EXPECT_EQ(scheduler_->Find(1)->block_table.size(), 4u);
  // The victim's blocks went to the survivor or back to the pool.
  EXPECT_EQ(allocator_->num_free(), 2);
  EXPECT_EQ(allocator_->ref_count(victim_blocks[0]) + allocator_->ref_count(victim_blocks[1]) +
                allocator_->ref_count(victim_blocks[2]),
            1);

  // 1 finishes; 2 recomputes prompt + generated tokens and completes.
  while (scheduler_->Find(1)->num_generated() < 6) Step();
  ASSERT_TRUE(scheduler_->Remove(1).ok());
  plan = Step();
  ASSERT_THAT(Ids(plan), ElementsAre(2));
  EXPECT_EQ(plan.chunks[0].start, 0);
  EXPECT_EQ(plan.chunks[0].count, 7);
  EXPECT_TRUE(plan.chunks[0].samples);
  while (scheduler_->Find(2)->num_generated() < 6) Step();
  const Sequence* done = scheduler_->Find(2);
  EXPECT_EQ(done->num_tokens(), 11);
  EXPECT_EQ(done->num_computed, 10);
  ASSERT_TRUE(scheduler_->Remove(2).ok());
  EXPECT_EQ(allocator_->num_free(), 6);
}

TEST_F(SchedulerTest, LatestArrivalPreemptsItself) {
  // 2 is the latest arrival and the only one needing a block: it evicts itself, 1 keeps running.
  Init({.max_running = 8, .max_tokens_per_step = 100}, 4, 3);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(6), 2).ok());
  ASSERT_TRUE(scheduler_->Add(2, Prompt(4), 4).ok());
  EXPECT_THAT(Ids(Step()), ElementsAre(1, 2));
  StepPlan plan = Step();  // 2 needs position 4 (a 2nd block); 1 stays within its 2 blocks
  EXPECT_THAT(plan.preempted, ElementsAre(2));
  EXPECT_THAT(Ids(plan), ElementsAre(1));
  EXPECT_EQ(scheduler_->Find(2)->state, SequenceState::kWaiting);
  EXPECT_EQ(scheduler_->num_waiting(), 1);
}

TEST_F(SchedulerTest, NoAdmissionInAStepThatPreempted) {
  Init({.max_running = 8, .max_tokens_per_step = 100}, 2, 6);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(5), 6).ok());
  ASSERT_TRUE(scheduler_->Add(2, Prompt(5), 6).ok());
  Step();
  Step();
  ASSERT_TRUE(scheduler_->Add(3, Prompt(1), 1).ok());
  StepPlan plan = Step();
  EXPECT_THAT(plan.preempted, ElementsAre(2));
  EXPECT_THAT(Ids(plan), ElementsAre(1));  // 2 freed 3 blocks, yet 3 is not admitted
  // The preempted sequence keeps its place ahead of later arrivals.
  // The preempted sequence keeps its place ahead of later arrivals: 3 waits behind 2, which
  // needs 4 blocks while 2 are free.
  plan = Step();
  EXPECT_THAT(Ids(plan), ElementsAre(1));
  EXPECT_EQ(scheduler_->Find(3)->state, SequenceState::kWaiting);
  EXPECT_EQ(scheduler_->num_waiting(), 2);
}

TEST_F(SchedulerTest, RemoveWaitingAndRunning) {
  Init({.max_running = 1, .max_tokens_per_step = 100}, 4, 16);
  ASSERT_TRUE(scheduler_->Add(1, Prompt(9), 4).ok());
  ASSERT_TRUE(scheduler_->Add(2, Prompt(9), 4).ok());
  Step();
  EXPECT_EQ(allocator_->num_free(), 13);
  ASSERT_TRUE(scheduler_->Remove(2).ok());  // waiting
  EXPECT_EQ(scheduler_->num_waiting(), 0);
  EXPECT_EQ(allocator_->num_free(), 13);
  ASSERT_TRUE(scheduler_->Remove(1).ok());  // running
  EXPECT_EQ(scheduler_->num_running(), 0);
  EXPECT_EQ(allocator_->num_free(), 16);
  absl::Status again = scheduler_->Remove(1);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("request 1"));
}

TEST_F(SchedulerTest, AddRejectsDuplicatesAndBadRequests) {
  Init({.max_running = 8, .max_tokens_per_step = 64, .chunked_prefill = true}, 4, 8);
  ASSERT_TRUE(scheduler_->Add(5, Prompt(3), 4).ok());

  absl::Status duplicate = scheduler_->Add(5, Prompt(3), 4);
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(duplicate.message(), HasSubstr("request 5"));

  absl::Status empty = scheduler_->Add(6, {}, 4);
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.message(), HasSubstr("prompt"));
  EXPECT_THAT(empty.message(), HasSubstr("request 6"));

  absl::Status no_tokens = scheduler_->Add(7, Prompt(3), 0);
  EXPECT_EQ(no_tokens.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_tokens.message(), HasSubstr("max_new_tokens"));

  // 8 blocks of 4 = 32 tokens: 30 + 2 fits, 30 + 3 does not.
  EXPECT_TRUE(scheduler_->Add(8, Prompt(30), 2).ok());
  absl::Status too_big = scheduler_->Add(9, Prompt(30), 3);
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.message(), HasSubstr("capacity of 32"));
  EXPECT_THAT(too_big.message(), HasSubstr("request 9"));
  EXPECT_EQ(scheduler_->Find(9), nullptr);
  EXPECT_EQ(scheduler_->num_waiting(), 2);
}

TEST_F(SchedulerTest, WithoutChunkingAddRejectsSequencesLongerThanTheBudget) {
  Init({.max_running = 8, .max_tokens_per_step = 16, .chunked_prefill = false}, 4, 64);
  EXPECT_TRUE(scheduler_->Add(1, Prompt(12), 4).ok());
  absl::Status too_long = scheduler_->Add(2, Prompt(12), 5);
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.message(), HasSubstr("max_tokens_per_step 16"));
}

TEST(SchedulerOptionsTest, ValidationNamesTheField) {
  absl::Status running = ValidateSchedulerOptions({.max_running = 0});
  EXPECT_EQ(running.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(running.message(), HasSubstr("max_running"));
  absl::Status budget = ValidateSchedulerOptions({.max_tokens_per_step = -1});
  EXPECT_EQ(budget.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(budget.message(), HasSubstr("max_tokens_per_step"));
  EXPECT_TRUE(ValidateSchedulerOptions({}).ok());
}

TEST(SchedulerDeathTest, AppendBeyondMaxNewTokensAborts) {
  kv::KvCacheConfig config = *kv::KvCacheConfig::Create(4, 4);
  kv::BlockAllocator allocator(4);
  Scheduler scheduler({}, config, &allocator);
  ASSERT_TRUE(scheduler.Add(1, Prompt(2), 1).ok());
  scheduler.Commit(scheduler.Schedule());
  scheduler.AppendToken(1, 9);
  scheduler.Commit(scheduler.Schedule());
  EXPECT_DEATH(scheduler.AppendToken(1, 9), "invariant broken");
}

TEST(SchedulerLifetimeTest, DestructorReturnsBlocks) {
  kv::KvCacheConfig config = *kv::KvCacheConfig::Create(4, 4);
  kv::BlockAllocator allocator(4);
  {
    Scheduler scheduler({}, config, &allocator);
    ASSERT_TRUE(scheduler.Add(1, Prompt(9), 2).ok());
    scheduler.Commit(scheduler.Schedule());
    EXPECT_EQ(allocator.num_free(), 1);
  }
  EXPECT_EQ(allocator.num_free(), 4);
}

}  // namespace
}  // namespace rackserve::scheduler
