#include "client/synthetic_dataset.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/sim/mlperf_workload.h"

namespace rackserve::client {
namespace {

// A workload length scaled for a small rack: rounded, at least 1, at most `max`.
int64_t Scaled(int64_t length, double scale, int64_t max) {
  const auto scaled = static_cast<int64_t>(std::llround(static_cast<double>(length) * scale));
  return std::clamp<int64_t>(scaled, 1, max);
}

}  // namespace

absl::StatusOr<std::vector<DatasetSample>> MakeSyntheticDataset(const DatasetOptions& options) {
  if (options.count < 1) {
    return absl::InvalidArgumentError(absl::StrCat("count: must be >= 1, got ", options.count));
  }
  if (options.max_output < 1 || options.max_output > sim::kMlperfMaxTokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_output: must be in [1, ", sim::kMlperfMaxTokens, "], got ", options.max_output));
  }
  if (options.vocab_size < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size: must be >= 4, got ", options.vocab_size));
  }
  if (options.max_context < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_context: must be >= 2, got ", options.max_context));
  }
  sim::WorkloadOptions workload;
  workload.num_prompts = options.count;
  workload.seed = options.seed;
  workload.vocab_size = static_cast<int32_t>(std::min<int64_t>(options.vocab_size, INT32_MAX));
  absl::StatusOr<std::vector<sim::WorkloadPrompt>> prompts = sim::GenerateMlperfWorkload(workload);
  if (!prompts.ok()) return prompts.status();

  const double scale = static_cast<double>(options.max_output) / sim::kMlperfMaxTokens;
  const int64_t max_output = std::min(options.max_output, options.max_context - 1);
  std::vector<DatasetSample> samples(prompts->size());
  for (size_t i = 0; i < samples.size(); ++i) {
    sim::WorkloadPrompt& prompt = (*prompts)[i];
    DatasetSample& sample = samples[i];
    sample.output_tokens = Scaled(prompt.output_tokens, scale, max_output);
    const int64_t input = Scaled(static_cast<int64_t>(prompt.tokens.size()), scale,
                                 options.max_context - sample.output_tokens);
    prompt.tokens.resize(static_cast<size_t>(input));
    sample.prompt_ids = std::move(prompt.tokens);
  }
  return samples;
}

}  // namespace rackserve::client
