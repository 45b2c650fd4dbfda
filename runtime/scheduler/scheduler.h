// Scheduler: continuous (in-flight) batching over a paged KV cache, first come first served.
//
// Each step, Schedule() picks the positions to compute under a token budget:
//   1. Running sequences in arrival order, each taking min(uncomputed positions, budget left)
//      tokens (1 for a decode; with chunked_prefill off, a sequence takes all or nothing). KV
//      blocks for positions up to start + count are allocated here. A sequence needing a block
//      when none is free preempts the most recently arrived running sequence, possibly itself
//      (recompute: its blocks are released, num_computed = 0, it returns to the waiting queue in
//      arrival order and will recompute prompt + generated tokens).
//   2. Only if nothing was preempted this step: waiting sequences in arrival order are admitted
//      while the budget, max_running and free blocks allow. Without chunked prefill a sequence
//      must fit whole in the budget left; with it, it may take the rest of the budget and continue
//      next step. Strict FCFS: admission stops at the first waiting sequence that does not fit.
// Consequently every running sequence arrived before every waiting one.
//
// Engine protocol per step: plan = Schedule(); run the plan; Commit(plan); AppendToken() for each
// chunk with samples == true; Remove() finished and cancelled sequences. Removing a sequence
// between Schedule() and Commit() leaves a dangling pointer in the plan: don't.
//
// Add() guarantees every accepted sequence fits the cache alone (and, without chunked prefill, one
// step's budget) up to max_new_tokens generated tokens, so preemption always makes progress.
//
// The Scheduler owns its Sequences and borrows the allocator, which must outlive it and have
// kv_config.num_blocks blocks. Not thread-safe; owned by the engine's step loop.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "runtime/kv/block_allocator.h"
#include "runtime/kv/kv_cache_config.h"
#include "runtime/scheduler/sequence.h"
#include "runtime/scheduler/step_plan.h"

namespace rackserve::scheduler {

struct SchedulerOptions {
  int max_running = 256;               // most sequences in the running batch, >= 1
  int64_t max_tokens_per_step = 2048;  // token budget per step, prefill and decode, >= 1
  bool chunked_prefill = true;         // split a prompt over several steps to fit the budget
};

// INVALID_ARGUMENT naming the field (max_running, max_tokens_per_step) when out of range.
absl::Status ValidateSchedulerOptions(const SchedulerOptions& options);

class Scheduler {
 public:
  // options must pass ValidateSchedulerOptions (checked: a programming error otherwise).
  Scheduler(SchedulerOptions options, const kv::KvCacheConfig& kv_config,
            kv::BlockAllocator* allocator);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Adds a sequence waiting to run. ALREADY_EXISTS for a known id. INVALID_ARGUMENT for an empty
  // prompt, max_new_tokens < 1, a sequence whose whole KV (prompt + max_new_tokens positions)
  // cannot fit in the cache even alone, or (without chunked prefill) one whose
  // prompt + max_new_tokens exceeds max_tokens_per_step, since a recompute after preemption must
  // fit in one step. `owner_index` is stored in the Sequence for the caller
  // (Sequence::owner_index).
  absl::Status Add(RequestId id, std::vector<int32_t> prompt, int64_t max_new_tokens,
                   uint32_t owner_index = 0);

  // Plans the next step (see the file comment). An empty plan when nothing can run.
  StepPlan Schedule();

  // Marks the plan's chunks computed (num_computed += count). Call once, after the step ran.
  void Commit(const StepPlan& plan);

  // Appends a sampled token to a running sequence whose positions are all computed (after Commit,
  // for a chunk with samples == true). At most max_new_tokens generated tokens per sequence.
  void AppendToken(RequestId id, int32_t token);
  // As AppendToken(chunk.seq->id, token), without the lookup: `chunk` is from the plan just
  // committed.
  void AppendToken(const ScheduledChunk& chunk, int32_t token);

  // Removes a finished or cancelled sequence in any state and releases its blocks.
  // NOT_FOUND for an unknown id.
  absl::Status Remove(RequestId id);

  const Sequence* Find(RequestId id) const;  // nullptr when unknown
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  // True while any sequence is held, waiting or running (the engine removes finished ones).
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  const SchedulerOptions& options() const { return options_; }

 private:
  // Grows seq's block table to cover positions [0, end). False (allocating nothing) when too few
  // blocks are free.
  bool GrowBlockTable(Sequence* seq, int64_t end);
  // AppendToken's checks and append.
  void AppendTo(Sequence* seq, int32_t token);
  // Releases seq's blocks and moves it from running to waiting for recompute.
  void Preempt(Sequence* seq);

  const SchedulerOptions options_;
  const kv::KvCacheConfig kv_config_;
  kv::BlockAllocator* const allocator_;  // not owned

  uint64_t next_arrival_ = 0;
  absl::flat_hash_map<RequestId, std::unique_ptr<Sequence>> sequences_;
  // Both in arrival order; every running sequence arrived before every waiting one, so admission
  // moves waiting_.front() to running_.back() and preemption running_.back() to waiting_.front().
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
};

}  // namespace rackserve::scheduler
