// RunOffline: the MLPerf offline scenario on one engine — submit every prompt at once, step until
// all finish, report generated tokens over the simulated device's busy time.
//
// Requests ignore EOS and generate exactly their prompt's output_tokens (as the simulated device
// never emits EOS, this is what a greedy run on the real dataset's lengths would give). Meant for
// a simulated engine in virtual time (tests, calibration, benchmarks); it blocks until done.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "runtime/engine/engine.h"
#include "runtime/sim/mlperf_workload.h"
#include "runtime/sim/sim_model_runner.h"

namespace rackserve::sim {

struct OfflineResult {
  int64_t requests = 0;
  int64_t generated_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t steps = 0;
  int64_t max_batch = 0;      // most sequences in one step
  int64_t preemptions = 0;    // sequences evicted for recompute
  double device_seconds = 0;  // modeled device time of the run
  double tokens_per_second() const {
    return device_seconds > 0 ? static_cast<double>(generated_tokens) / device_seconds : 0;
  }
};

// Runs `prompts` (request ids 0..N-1) on `engine`, whose runner is `runner` (see
// CreateSimEngine). Errors: those of Engine::Submit (naming the request) and Engine::Step.
// The engine must be idle on entry.
absl::StatusOr<OfflineResult> RunOffline(engine::Engine* engine, const SimModelRunner& runner,
                                         std::span<const WorkloadPrompt> prompts);

}  // namespace rackserve::sim
