#include "runtime/sim/mlperf_workload.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/sampling/counter_rng.h"

namespace rackserve::sim {
namespace {

// Mean of a gamma(shape 2, scale theta) variable conditioned on being <= c. With z = c / theta and
// the regularized lower incomplete gamma P(2, z) = 1 - e^-z (1 + z),
// P(3, z) = 1 - e^-z (1 + z + z^2 / 2): E[X | X <= c] = 2 theta P(3, z) / P(2, z).
double TruncatedGamma2Mean(double theta, double c) {
  const double z = c / theta;
  const double e = std::exp(-z);
  const double p2 = 1 - e * (1 + z);
  const double p3 = 1 - e * (1 + z + z * z / 2);
  return 2 * theta * p3 / p2;
}

// The scale whose truncated mean is `mean` (the truncated mean grows with theta).
double SolveScale(double mean, double c) {
  double lo = 1e-6, hi = 1e6;
  for (int i = 0; i < 200; ++i) {
    const double mid = std::sqrt(lo * hi);
    (TruncatedGamma2Mean(mid, c) < mean ? lo : hi) = mid;
  }
  return std::sqrt(lo * hi);
}

// Streams of the counter-based generator, one per use, so each draw is independent of the others.
enum Stream : uint64_t { kInputLength = 1, kOutputLength = 2, kTokens = 3 };

uint64_t Counter(Stream stream, uint64_t prompt, uint64_t draw) {
  return (static_cast<uint64_t>(stream) << 60) ^ (prompt << 28) ^ draw;
}

// A gamma(2, theta) draw truncated to (0, max] by rejection, rounded up to whole tokens.
int64_t DrawLength(uint64_t seed, Stream stream, uint64_t prompt, double theta, int64_t max) {
  for (uint64_t draw = 0;; draw += 2) {
    const double u1 = 1 - sampling::CounterUniform(seed, Counter(stream, prompt, draw));
    const double u2 = 1 - sampling::CounterUniform(seed, Counter(stream, prompt, draw + 1));
    const double x = -theta * (std::log(u1) + std::log(u2));
    if (x <= static_cast<double>(max)) {
      return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(x)));
    }
  }
}

absl::Status CheckMean(const std::string& field, double mean, int64_t max_tokens) {
  if (!(mean > 1 && mean < static_cast<double>(max_tokens) / 2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "workload ", field, " = ", mean,
        " is outside (1, max_tokens / 2 = ", static_cast<double>(max_tokens) / 2, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<WorkloadPrompt>> GenerateMlperfWorkload(const WorkloadOptions& options) {
  if (options.num_prompts < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("workload num_prompts must be >= 1, got ", options.num_prompts));
  }
  if (options.max_tokens < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("workload max_tokens must be >= 2, got ", options.max_tokens));
  }
  if (options.first_token_id < 0 || options.first_token_id >= options.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("workload first_token_id = ", options.first_token_id,
                     " is outside [0, vocab_size = ", options.vocab_size, ")"));
  }
  absl::Status s = CheckMean("mean_input_tokens", options.mean_input_tokens, options.max_tokens);
  if (!s.ok()) return s;
  s = CheckMean("mean_output_tokens", options.mean_output_tokens, options.max_tokens);
  if (!s.ok()) return s;

  // Rounding up adds about half a token to the mean: aim half a token lower.
  const auto max = static_cast<double>(options.max_tokens);
  const double input_theta = SolveScale(options.mean_input_tokens - 0.5, max);
  const double output_theta = SolveScale(options.mean_output_tokens - 0.5, max);
  const auto span = static_cast<uint64_t>(options.vocab_size - options.first_token_id);
  std::vector<WorkloadPrompt> prompts(static_cast<size_t>(options.num_prompts));
  for (uint64_t i = 0; i < prompts.size(); ++i) {
    WorkloadPrompt& p = prompts[i];
    const int64_t input =
        DrawLength(options.seed, kInputLength, i, input_theta, options.max_tokens);
    p.output_tokens = DrawLength(options.seed, kOutputLength, i, output_theta, options.max_tokens);
    p.tokens.resize(static_cast<size_t>(input));
    for (int64_t t = 0; t < input; ++t) {
      const uint64_t h = sampling::CounterHash(options.seed, Counter(kTokens, i, t));
      p.tokens[t] = options.first_token_id + static_cast<int32_t>(h % span);
    }
  }
  return prompts;
}

}  // namespace rackserve::sim
