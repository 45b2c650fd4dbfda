// Sequence: the scheduler's record of one request's tokens and KV blocks.
//
// tokens = the prompt followed by the tokens generated so far. The KV of positions
// [0, num_computed) is in the blocks of `block_table`: block i holds positions
// [i * block_size, (i + 1) * block_size). The Scheduler owns every Sequence and is the only writer;
// others read them through Scheduler::Find() or a StepPlan, on the scheduler's thread.
#pragma once

#include <cstdint>
#include <vector>

namespace rackserve::scheduler {

using RequestId = uint64_t;

enum class SequenceState {
  kWaiting,  // holds no KV blocks; num_computed == 0
  kRunning,  // admitted: in the running batch, holding the blocks of its computed positions
};

// Cache-line aligned: a step reads every field but `arrival` of each sequence in its batch, and a
// sequence then spans exactly two lines (see Scheduler::Commit's prefetch).
struct alignas(64) Sequence {
  RequestId id = 0;
  std::vector<int32_t> tokens;       // prompt, then generated tokens
  int64_t prompt_len = 0;            // > 0
  int64_t max_new_tokens = 0;        // generated tokens this sequence may reach, >= 1
  int64_t num_computed = 0;          // positions whose KV is in the cache
  std::vector<int32_t> block_table;  // KV block ids, in position order
  SequenceState state = SequenceState::kWaiting;
  uint64_t arrival = 0;     // FCFS order, assigned by Scheduler::Add
  int num_preemptions = 0;  // times evicted and sent back to recompute
  // The index the scheduler's owner keeps the request's own state at (Scheduler::Add's argument):
  // the owner reaches it from a plan's chunk without a lookup. The scheduler never reads it.
  uint32_t owner_index = 0;

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_generated() const { return num_tokens() - prompt_len; }
  // Positions still to compute before the next token can be sampled.
  int64_t num_uncomputed() const { return num_tokens() - num_computed; }
};

}  // namespace rackserve::scheduler
