// The bench's synthetic MLPerf-llama2-like dataset: the simulated GPUs' calibration workload
// (runtime/sim/mlperf_workload.h: seeded prompts of random token ids, input and output lengths
// each a truncated gamma in [1, 1023] tokens, mean output 294, mean input 400 — an assumption),
// so a rack of simulated GPUs runs the workload their profiles were fitted on.
//
// On CPU racks `max_output` < 1023 scales every length by max_output / 1023 (rounded, at least 1
// token; the mean output becomes about 294 * max_output / 1023). Every sample also fits
// max_context (input trimmed first). Pure and deterministic for a seed.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::client {

struct DatasetOptions {
  int64_t count = 1000;  // samples
  uint64_t seed = 0;
  int64_t max_output = 1023;   // in [1, 1023]: scales lengths down for small CPU racks
  int64_t vocab_size = 32000;  // prompt ids are drawn from [3, vocab_size) (0-2: unk, bos, eos)
  int64_t max_context = 4096;  // input + output <= max_context
};

struct DatasetSample {
  std::vector<int32_t> prompt_ids;
  int64_t output_tokens = 0;  // generated with ignore_eos up to this many tokens
};

// INVALID_ARGUMENT naming the option when count < 1, max_output outside [1, 1023],
// vocab_size < 4 or max_context < 2.
absl::StatusOr<std::vector<DatasetSample>> MakeSyntheticDataset(const DatasetOptions& options);

}  // namespace rackserve::client
