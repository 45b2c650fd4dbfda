// Randomized stress test of Scheduler + BlockAllocator: random adds, steps, finishes and
// cancellations on a small cache, so preemption is frequent; invariants checked after every
// operation, no leak at the end.
#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/scheduler/scheduler.h"

namespace rackserve::scheduler {
namespace {

constexpr int kBlockSize = 4;
constexpr int64_t kNumBlocks = 24;  // 96 token positions
constexpr int kOperations = 10000;

struct Expected {
  std::vector<int32_t> tokens;  // prompt + tokens appended, as the engine saw them
  int64_t max_new_tokens = 0;
};

class SchedulerStressTest : public ::testing::TestWithParam<bool> {
 protected:
  SchedulerStressTest()
      // Without chunked prefill the budget must hold a whole sequence (prompt + output).
      : options_{.max_running = 6,
                 .max_tokens_per_step = GetParam() ? 32 : 72,
                 .chunked_prefill = GetParam()},
        config_(*kv::KvCacheConfig::Create(kBlockSize, kNumBlocks)),
        allocator_(kNumBlocks),
        scheduler_(options_, config_, &allocator_) {}

  void CheckInvariants() {
    std::vector<int32_t> holders(kNumBlocks, 0);
    int64_t used = 0;
    uint64_t latest_running = 0;
    uint64_t earliest_waiting = UINT64_MAX;
    int64_t waiting = 0;
    for (const auto& [id, expected] : live_) {
      const Sequence* seq = scheduler_.Find(id);
      ASSERT_NE(seq, nullptr) << id;
      ASSERT_EQ(seq->tokens, expected.tokens) << id;
      ASSERT_LE(seq->num_computed, seq->num_tokens());
      if (seq->state == SequenceState::kWaiting) {
        ++waiting;
        earliest_waiting = std::min(earliest_waiting, seq->arrival);
        ASSERT_EQ(seq->num_computed, 0) << id;
        ASSERT_TRUE(seq->block_table.empty()) << id;
      } else {
        latest_running = std::max(latest_running, seq->arrival);
        ASSERT_GE(static_cast<int64_t>(seq->block_table.size()),
                  config_.BlocksFor(seq->num_computed));
        ASSERT_LE(static_cast<int64_t>(seq->block_table.size()),
                  config_.BlocksFor(seq->num_tokens()));
      }
      for (int32_t block : seq->block_table) {
        ASSERT_GE(block, 0);
        ASSERT_LT(block, kNumBlocks);
        ++holders[block];
        ++used;
      }
    }
    int64_t ref_sum = 0;
    for (int32_t block = 0; block < kNumBlocks; ++block) {
      ASSERT_LE(holders[block], 1) << "block " << block << " is in two tables";
      ASSERT_EQ(allocator_.ref_count(block), holders[block]) << "block " << block;
      ref_sum += allocator_.ref_count(block);
    }
    ASSERT_EQ(ref_sum, used);
    ASSERT_EQ(allocator_.num_free() + used, kNumBlocks);
    ASSERT_EQ(scheduler_.num_waiting(), waiting);
    ASSERT_EQ(scheduler_.num_running() + waiting, static_cast<int64_t>(live_.size()));
    ASSERT_LE(scheduler_.num_running(), options_.max_running);
    if (waiting > 0 && scheduler_.num_running() > 0) {
      ASSERT_LT(latest_running, earliest_waiting) << "a later arrival runs ahead of a waiting one";
    }
  }

  // One engine step; `eos_rate` is the chance a sampled token ends its sequence early.
  void Step(std::mt19937_64& rng, double eos_rate) {
    const StepPlan plan = scheduler_.Schedule();
    if (scheduler_.has_work()) {
      ASSERT_FALSE(plan.empty()) << "no progress with work pending";
    }
    ASSERT_LE(plan.num_tokens, options_.max_tokens_per_step);
    num_preemptions_ += static_cast<int64_t>(plan.preempted.size());
    int64_t total = 0;
    std::set<RequestId> seen;
    for (const ScheduledChunk& chunk : plan.chunks) {
      ASSERT_TRUE(seen.insert(chunk.seq->id).second) << "two chunks for one sequence";
      ASSERT_GE(chunk.count, 1);
      ASSERT_EQ(chunk.start, chunk.seq->num_computed);
      ASSERT_EQ(chunk.samples, chunk.start + chunk.count == chunk.seq->num_tokens());
      ASSERT_GE(static_cast<int64_t>(chunk.seq->block_table.size()),
                config_.BlocksFor(chunk.start + chunk.count));
      total += chunk.count;
    }
    ASSERT_EQ(total, plan.num_tokens);
    for (RequestId id : plan.preempted) ASSERT_FALSE(seen.contains(id));
    scheduler_.Commit(plan);

    std::uniform_real_distribution<double> coin(0.0, 1.0);
    std::vector<RequestId> finished;
    for (const ScheduledChunk& chunk : plan.chunks) {
      if (!chunk.samples) continue;
      const RequestId id = chunk.seq->id;
      const int32_t token = static_cast<int32_t>(rng() % 32000);
      scheduler_.AppendToken(id, token);
      Expected& expected = live_.at(id);
      expected.tokens.push_back(token);
      const int64_t generated = scheduler_.Find(id)->num_generated();
      if (generated == expected.max_new_tokens || coin(rng) < eos_rate) finished.push_back(id);
    }
    for (RequestId id : finished) {
      ASSERT_TRUE(scheduler_.Remove(id).ok());
      live_.erase(id);
      ++num_finished_;
    }
  }

  const SchedulerOptions options_;
  const kv::KvCacheConfig config_;
  kv::BlockAllocator allocator_;
  Scheduler scheduler_;
  std::map<RequestId, Expected> live_;
  int64_t num_preemptions_ = 0;
  int64_t num_finished_ = 0;
};

TEST_P(SchedulerStressTest, RandomOperationsKeepInvariants) {
  std::mt19937_64 rng(GetParam() ? 20240611 : 777);
  std::uniform_int_distribution<int> op_dist(0, 99);
  std::uniform_int_distribution<int64_t> prompt_dist(1, 60);
  std::uniform_int_distribution<int64_t> new_tokens_dist(1, 40);
  RequestId next_id = 1;
  int64_t rejected = 0;

  for (int op = 0; op < kOperations; ++op) {
    const int choice = op_dist(rng);
    if (choice < 25) {  // add
      const int64_t prompt_len = prompt_dist(rng);
      const int64_t max_new = new_tokens_dist(rng);
      std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
      for (int32_t& token : prompt) token = static_cast<int32_t>(rng() % 32000);
      const bool fits =
          config_.BlocksFor(prompt_len + max_new) <= kNumBlocks &&
          (options_.chunked_prefill || prompt_len + max_new <= options_.max_tokens_per_step);
      const absl::Status status = scheduler_.Add(next_id, prompt, max_new);
      if (fits) {
        ASSERT_TRUE(status.ok()) << status;
        live_[next_id] = {prompt, max_new};
      } else {
        ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
        ++rejected;
      }
      ++next_id;
    } else if (choice < 27 && !live_.empty()) {  // duplicate add
      const RequestId id = live_.begin()->first;
      ASSERT_EQ(scheduler_.Add(id, {1}, 1).code(), absl::StatusCode::kAlreadyExists);
    } else if (choice < 85) {  // step
      Step(rng, 0.03);
    } else if (choice < 97) {  // cancel a sequence in any state
      if (live_.empty()) continue;
      auto it = live_.begin();
      std::advance(it, static_cast<int64_t>(rng() % live_.size()));
      ASSERT_TRUE(scheduler_.Remove(it->first).ok());
      live_.erase(it);
    } else {  // cancel an unknown id
      ASSERT_EQ(scheduler_.Remove(next_id + 1000).code(), absl::StatusCode::kNotFound);
    }
    CheckInvariants();
    if (HasFatalFailure()) return;
  }

  // Drain: everything left completes.
  for (int step = 0; scheduler_.has_work(); ++step) {
    ASSERT_LT(step, 100000) << "the scheduler does not drain";
    Step(rng, 0.0);
    CheckInvariants();
    if (HasFatalFailure()) return;
  }
  EXPECT_TRUE(live_.empty());
  EXPECT_EQ(allocator_.num_free(), kNumBlocks);
  EXPECT_GT(num_preemptions_, 200);
  EXPECT_GT(num_finished_, 500);
  RecordProperty("preemptions", static_cast<int>(num_preemptions_));
  RecordProperty("rejected", static_cast<int>(rejected));
}

INSTANTIATE_TEST_SUITE_P(ChunkedPrefill, SchedulerStressTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Chunked" : "Whole";
                         });

}  // namespace
}  // namespace rackserve::scheduler
