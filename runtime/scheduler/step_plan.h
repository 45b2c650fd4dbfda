// StepPlan: what one engine step computes, as chosen by Scheduler::Schedule().
//
// The plan borrows Sequence pointers from the Scheduler: they stay valid until the plan is
// committed, provided no sequence is removed in between (apply cancellations between steps).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/scheduler/sequence.h"

namespace rackserve::scheduler {

// Part of one sequence computed in a step: positions [start, start + count), with
// start == seq->num_computed when planned. `samples` is true when the chunk reaches the end of
// seq->tokens, i.e. the step's last logits for it give the next token. The sequence's block table
// covers every position < start + count.
struct ScheduledChunk {
  Sequence* seq = nullptr;
  int64_t start = 0;
  int64_t count = 0;  // >= 1
  bool samples = false;
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;  // in running order (FCFS by arrival)
  std::vector<RequestId> preempted;    // evicted this step: blocks freed, back to waiting
  int64_t num_tokens = 0;              // sum of chunk counts (<= max_tokens_per_step)

  bool empty() const { return chunks.empty(); }
};

}  // namespace rackserve::scheduler
