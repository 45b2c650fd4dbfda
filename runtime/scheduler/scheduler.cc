#include "runtime/scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::scheduler {
namespace {

// Erases `seq` from `list`, which is sorted by arrival and holds it.
template <typename List>
void EraseByArrival(List& list, const Sequence* seq) {
  auto it =
      std::lower_bound(list.begin(), list.end(), seq->arrival,
                       [](const Sequence* s, uint64_t arrival) { return s->arrival < arrival; });
  RS_CHECK(it != list.end() && *it == seq);
  list.erase(it);
}

}  // namespace

absl::Status ValidateSchedulerOptions(const SchedulerOptions& options) {
  if (options.max_running < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("scheduler max_running must be >= 1, got ", options.max_running));
  }
  if (options.max_tokens_per_step < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scheduler max_tokens_per_step must be >= 1, got ", options.max_tokens_per_step));
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(SchedulerOptions options, const kv::KvCacheConfig& kv_config,
                     kv::BlockAllocator* allocator)
    : options_(options), kv_config_(kv_config), allocator_(allocator) {
  RS_CHECK(ValidateSchedulerOptions(options_).ok());
  RS_CHECK(allocator_ != nullptr);
  RS_CHECK(allocator_->num_blocks() == kv_config_.num_blocks);
}

Scheduler::~Scheduler() {
  for (auto& [id, seq] : sequences_) allocator_->ReleaseAll(seq->block_table);
}

absl::Status Scheduler::Add(RequestId id, std::vector<int32_t> prompt, int64_t max_new_tokens,
                            uint32_t owner_index) {
  if (sequences_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", id, " is already scheduled"));
  }
  if (prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("request ", id, ": prompt is empty"));
  }
  if (max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", id, ": max_new_tokens must be >= 1, got ", max_new_tokens));
  }
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  const int64_t max_len = prompt_len + max_new_tokens;
  if (kv_config_.BlocksFor(max_len) > kv_config_.num_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", id, ": prompt length ", prompt_len, " + max_new_tokens ",
                     max_new_tokens, " = ", max_len, " tokens exceeds the KV cache capacity of ",
                     kv_config_.capacity_tokens(), " tokens"));
  }
  if (!options_.chunked_prefill && max_len > options_.max_tokens_per_step) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", id, ": prompt length ", prompt_len, " + max_new_tokens ",
                     max_new_tokens, " = ", max_len, " tokens exceeds max_tokens_per_step ",
                     options_.max_tokens_per_step, " and chunked_prefill is off"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->tokens = std::move(prompt);
  seq->prompt_len = prompt_len;
  seq->max_new_tokens = max_new_tokens;
  seq->arrival = next_arrival_++;
  seq->owner_index = owner_index;
  waiting_.push_back(seq.get());  // the latest arrival
  sequences_.emplace(id, std::move(seq));
  return absl::OkStatus();
}

bool Scheduler::GrowBlockTable(Sequence* seq, int64_t end) {
  const int64_t missing = kv_config_.BlocksFor(end) - static_cast<int64_t>(seq->block_table.size());
  if (missing <= 0) return true;
  absl::StatusOr<std::vector<int32_t>> blocks = allocator_->Allocate(missing);
  if (!blocks.ok()) return false;
  seq->block_table.insert(seq->block_table.end(), blocks->begin(), blocks->end());
  return true;
}

void Scheduler::Preempt(Sequence* seq) {
  RS_CHECK(seq->state == SequenceState::kRunning);
  allocator_->ReleaseAll(seq->block_table);
  seq->block_table.clear();
  seq->num_computed = 0;
  seq->state = SequenceState::kWaiting;
  ++seq->num_preemptions;
  RS_CHECK(running_.back() == seq);  // the latest running arrival, earlier than every waiting one
  running_.pop_back();
  waiting_.push_front(seq);
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  plan.chunks.reserve(std::min<size_t>(running_.size() + waiting_.size(),
                                       static_cast<size_t>(options_.max_running)));
  int64_t budget = options_.max_tokens_per_step;

  // 1. Running sequences, FCFS. Victims of preemption are always later in arrival order than the
  // sequence being served, so they have no chunk in the plan yet (and running_[i] stays put).
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* seq = running_[i];
    const int64_t uncomputed = seq->num_uncomputed();
    if (uncomputed == 0 || (!options_.chunked_prefill && uncomputed > budget)) continue;
    const int64_t count = std::min(uncomputed, budget);
    bool preempted_self = false;
    while (!GrowBlockTable(seq, seq->num_computed + count)) {
      Sequence* victim = running_.back();
      plan.preempted.push_back(victim->id);
      Preempt(victim);
      if (victim == seq) {
        preempted_self = true;
        break;
      }
    }
    if (preempted_self) break;  // seq was the latest arrival: nothing runs after it
    plan.chunks.push_back({seq, seq->num_computed, count, count == uncomputed});
    plan.num_tokens += count;
    budget -= count;
  }

  // 2. Admission, FCFS, only when this step preempted nothing.
  if (!plan.preempted.empty()) return plan;
  while (!waiting_.empty() && budget > 0 &&
         num_running() < static_cast<int64_t>(options_.max_running)) {
    Sequence* seq = waiting_.front();
    const int64_t uncomputed = seq->num_uncomputed();
    if (!options_.chunked_prefill && uncomputed > budget) break;
    const int64_t count = std::min(uncomputed, budget);
    if (!GrowBlockTable(seq, count)) break;
    waiting_.pop_front();
    running_.push_back(seq);
    seq->state = SequenceState::kRunning;
    plan.chunks.push_back({seq, 0, count, count == uncomputed});
    plan.num_tokens += count;
    budget -= count;
  }
  return plan;
}

void Scheduler::Commit(const StepPlan& plan) {
  // The first pass over the batch after the device step, whose wait may have let other processes
  // evict the sequences: each is fetched a few chunks ahead, so the misses overlap.
  constexpr size_t kPrefetchAhead = 8;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    if (i + kPrefetchAhead < plan.chunks.size()) {
      const auto* ahead = reinterpret_cast<const char*>(plan.chunks[i + kPrefetchAhead].seq);
      static_assert(sizeof(Sequence) <= 128);
      __builtin_prefetch(ahead, /*rw=*/1);
      __builtin_prefetch(ahead + 64, /*rw=*/1);
    }
    const ScheduledChunk& chunk = plan.chunks[i];
    Sequence* seq = chunk.seq;
    RS_CHECK(seq->state == SequenceState::kRunning);
    RS_CHECK(chunk.start == seq->num_computed);  // a plan is committed once, in order
    RS_CHECK(chunk.start + chunk.count <= seq->num_tokens());
    seq->num_computed += chunk.count;
  }
}

void Scheduler::AppendToken(RequestId id, int32_t token) {
  auto it = sequences_.find(id);
  RS_CHECK(it != sequences_.end());
  AppendTo(it->second.get(), token);
}

void Scheduler::AppendToken(const ScheduledChunk& chunk, int32_t token) {
  AppendTo(chunk.seq, token);
}

void Scheduler::AppendTo(Sequence* seq, int32_t token) {
  RS_CHECK(seq->state == SequenceState::kRunning);
  RS_CHECK(seq->num_uncomputed() == 0);
  RS_CHECK(seq->num_generated() < seq->max_new_tokens);
  seq->tokens.push_back(token);
}

absl::Status Scheduler::Remove(RequestId id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("request ", id, " is not scheduled"));
  }
  Sequence* seq = it->second.get();
  allocator_->ReleaseAll(seq->block_table);
  if (seq->state == SequenceState::kRunning) {
    EraseByArrival(running_, seq);
  } else {
    EraseByArrival(waiting_, seq);
  }
  sequences_.erase(it);
  return absl::OkStatus();
}

const Sequence* Scheduler::Find(RequestId id) const {
  auto it = sequences_.find(id);
  return it == sequences_.end() ? nullptr : it->second.get();
}

}  // namespace rackserve::scheduler
