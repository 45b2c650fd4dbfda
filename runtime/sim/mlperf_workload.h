// MlperfWorkload: a seeded synthetic dataset shaped like MLPerf Inference's llama2-70b one
// (OpenOrca prompts): N prompts whose input and output lengths each lie in [1, max_tokens].
//
// Lengths follow a gamma distribution of shape 2 truncated to [1, max_tokens], its scale solved
// so the truncated mean equals the requested mean (before rounding up to whole tokens).
// - mean_output_tokens 294: the MLPerf llama2-70b mean output length (DESIGN.md).
// - mean_input_tokens: kAssumedMeanInputTokens is an ASSUMPTION, not the OpenOrca subset's
//   measured figure (which was not at hand when this was written). Replace it with the dataset's
//   figure when known; the GPU profiles' fitted efficiencies would then be refitted.
// The shape (gamma 2) is also an assumption: a skewed, unimodal length distribution.
// Prompt token ids are pseudo-random in [first_token_id, vocab_size). The same options give the
// same workload on every machine. No gRPC, no I/O: rackctl and benchmarks may share it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::sim {

inline constexpr double kMlperfMeanOutputTokens = 294;
inline constexpr double kAssumedMeanInputTokens = 400;
inline constexpr int64_t kMlperfMaxTokens = 1023;  // inputs and outputs are < 1,024 tokens
inline constexpr int64_t kMlperfNumPrompts = 24576;

struct WorkloadOptions {
  int64_t num_prompts = kMlperfNumPrompts;              // >= 1
  uint64_t seed = 0;                                    // same seed, same workload
  double mean_input_tokens = kAssumedMeanInputTokens;   // in (1, max_tokens / 2)
  double mean_output_tokens = kMlperfMeanOutputTokens;  // in (1, max_tokens / 2)
  int64_t max_tokens = kMlperfMaxTokens;                // longest input or output, >= 2
  int32_t vocab_size = 32000;                           // > first_token_id
  int32_t first_token_id = 3;  // lowest prompt token id (skips Llama's <unk>, <s>, </s>)
};

struct WorkloadPrompt {
  std::vector<int32_t> tokens;  // the prompt, [1, max_tokens] ids
  int64_t output_tokens = 0;    // tokens to generate (max_new_tokens), [1, max_tokens]
};

// INVALID_ARGUMENT naming the field for options out of range.
absl::StatusOr<std::vector<WorkloadPrompt>> GenerateMlperfWorkload(const WorkloadOptions& options);

}  // namespace rackserve::sim
