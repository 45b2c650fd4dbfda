#include "client/synthetic_dataset.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

#include "absl/strings/str_cat.h"

namespace rackserve::client {
namespace {

constexpr int64_t kMaxLength = 1023;  // MLPerf llama2-70b: input and output each < 1,024 tokens
constexpr double kOutputMu = 5.43, kOutputSigma = 0.75;
constexpr double kInputMu = 5.0, kInputSigma = 0.7;

// A standard normal draw (Box-Muller on the engine's raw bits: the same on every platform).
double Normal(std::mt19937_64& rng) {
  const double u1 = (static_cast<double>(rng() >> 11) + 1.0) / 9007199254740993.0;  // (0, 1]
  const double u2 = static_cast<double>(rng() >> 11) / 9007199254740992.0;          // [0, 1)
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

int64_t LogNormalLength(std::mt19937_64& rng, double mu, double sigma, double scale,
                        int64_t max_length) {
  const double length = std::round(std::exp(mu + sigma * Normal(rng)) * scale);
  return std::clamp(static_cast<int64_t>(std::min(length, 1e9)), int64_t{1}, max_length);
}

}  // namespace

absl::StatusOr<std::vector<DatasetSample>> MakeSyntheticDataset(const DatasetOptions& options) {
  if (options.count < 1) {
    return absl::InvalidArgumentError(absl::StrCat("count: must be >= 1, got ", options.count));
  }
  if (options.max_output < 1 || options.max_output > kMaxLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_output: must be in [1, ", kMaxLength, "], got ", options.max_output));
  }
  if (options.vocab_size < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size: must be >= 4, got ", options.vocab_size));
  }
  if (options.max_context < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_context: must be >= 2, got ", options.max_context));
  }
  const double scale = static_cast<double>(options.max_output) / kMaxLength;
  const int64_t max_output = std::min(options.max_output, options.max_context - 1);
  std::mt19937_64 rng(options.seed);
  std::vector<DatasetSample> samples(options.count);
  for (DatasetSample& sample : samples) {
    sample.output_tokens = LogNormalLength(rng, kOutputMu, kOutputSigma, scale, max_output);
    const int64_t input = std::min(LogNormalLength(rng, kInputMu, kInputSigma, scale, kMaxLength),
                                   options.max_context - sample.output_tokens);
    sample.prompt_ids.resize(input);
    for (int32_t& id : sample.prompt_ids) {
      id = static_cast<int32_t>(3 + rng() % static_cast<uint64_t>(options.vocab_size - 3));
    }
  }
  return samples;
}

}  // namespace rackserve::client
