#include "runtime/sim/offline_run.h"

#include <algorithm>

#include "runtime/base/status_macros.h"

namespace rackserve::sim {

absl::StatusOr<OfflineResult> RunOffline(engine::Engine* engine, const SimModelRunner& runner,
                                         std::span<const WorkloadPrompt> prompts) {
  OfflineResult result;
  const double device_start = runner.device_seconds();
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::Request request;
    request.id = i;
    request.prompt = prompts[i].tokens;
    request.sampling.max_new_tokens = prompts[i].output_tokens;
    request.sampling.ignore_eos = true;
    RS_RETURN_IF_ERROR(engine->Submit(std::move(request)));
    result.prompt_tokens += static_cast<int64_t>(prompts[i].tokens.size());
  }
  result.requests = static_cast<int64_t>(prompts.size());
  while (engine->has_work()) {
    engine::StepStats stats;
    RS_ASSIGN_OR_RETURN(std::vector<engine::TokenEvent> events, engine->Step(&stats));
    result.generated_tokens += stats.generated_tokens;
    result.max_batch = std::max(result.max_batch, stats.num_sequences);
    result.preemptions += stats.preempted;
    ++result.steps;
  }
  result.device_seconds = runner.device_seconds() - device_start;
  return result;
}

}  // namespace rackserve::sim
