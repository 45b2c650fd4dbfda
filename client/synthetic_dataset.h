// The bench's synthetic MLPerf-llama2-like dataset: seeded prompts of random token ids whose input
// and output lengths follow log-normal distributions clipped to [1, 1023] tokens.
//
// Output lengths: log-normal with mu 5.43, sigma 0.75, giving a mean near 294 tokens (the MLPerf
// llama2-70b reference dataset's mean output, DESIGN.md). Input lengths: log-normal with mu 5.0,
// sigma 0.7 (mean about 190 tokens) — an assumption standing in for the OpenOrca subset's input
// lengths, not a measured figure. On CPU racks `max_output` < 1023 scales both distributions by
// max_output / 1023 (the mean output becomes about 294 * max_output / 1023). Every sample also
// fits max_context (input trimmed first). Pure and deterministic for a seed.
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
