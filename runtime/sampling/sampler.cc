#include "runtime/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "runtime/base/status_macros.h"
#include "runtime/sampling/counter_rng.h"

namespace rackserve::sampling {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// NaN ranks as -inf.
float RankKey(float logit) { return std::isnan(logit) ? kNegInf : logit; }

int32_t Argmax(std::span<const float> logits) {
  int32_t best = 0;
  float best_key = RankKey(logits[0]);
  for (size_t i = 1; i < logits.size(); ++i) {
    if (RankKey(logits[i]) > best_key) {
      best = static_cast<int32_t>(i);
      best_key = RankKey(logits[i]);
    }
  }
  return best;
}

// Picks index i of `weights` with probability weights[i] / sum, by inverse CDF at u in [0, 1).
size_t PickByWeight(const std::vector<double>& weights, double u) {
  double total = 0.0;
  for (double w : weights) total += w;
  const double target = u * total;
  double cumulative = 0.0;
  size_t last_positive = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0.0) continue;
    cumulative += weights[i];
    last_positive = i;
    if (target < cumulative) return i;
  }
  return last_positive;  // rounding left target at the very top
}

}  // namespace

int32_t SampleToken(std::span<const float> logits, const SamplingParams& params, int64_t step) {
  RS_CHECK(!logits.empty());
  RS_CHECK(params.temperature >= 0.0f && params.top_k >= 0);
  RS_CHECK(params.top_p > 0.0f && params.top_p <= 1.0f);
  if (params.temperature == 0.0f || params.top_k == 1) return Argmax(logits);

  const int32_t best = Argmax(logits);
  const float max_logit = RankKey(logits[best]);
  if (max_logit == kNegInf) return best;  // nothing has positive probability
  const double inv_temperature = 1.0 / static_cast<double>(params.temperature);
  // Unnormalized softmax(logits / T), exact 1 at the maximum (also when it is +inf).
  auto weight = [&](float logit) {
    const float key = RankKey(logit);
    if (key == max_logit) return 1.0;
    return std::exp((static_cast<double>(key) - max_logit) * inv_temperature);
  };
  const double u = CounterUniform(params.seed, static_cast<uint64_t>(step));

  const int64_t vocab = static_cast<int64_t>(logits.size());
  const bool use_top_k = params.top_k > 0 && params.top_k < vocab;
  const bool use_top_p = params.top_p < 1.0f;
  if (!use_top_k && !use_top_p) {
    std::vector<double> weights(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) weights[i] = weight(logits[i]);
    return static_cast<int32_t>(PickByWeight(weights, u));
  }

  // Candidates by decreasing logit, ties to the lower id.
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  auto more_likely = [&](int32_t a, int32_t b) {
    const float ka = RankKey(logits[a]);
    const float kb = RankKey(logits[b]);
    return ka > kb || (ka == kb && a < b);
  };
  const int64_t kept = use_top_k ? params.top_k : vocab;
  std::partial_sort(ids.begin(), ids.begin() + kept, ids.end(), more_likely);
  ids.resize(static_cast<size_t>(kept));

  std::vector<double> weights(ids.size());
  double total = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) {
    weights[i] = weight(logits[ids[i]]);
    total += weights[i];
  }
  if (use_top_p) {
    const double threshold = static_cast<double>(params.top_p) * total;
    double cumulative = 0.0;
    size_t nucleus = 0;
    while (nucleus < weights.size() && cumulative < threshold) cumulative += weights[nucleus++];
    weights.resize(std::max<size_t>(nucleus, 1));
  }
  return ids[PickByWeight(weights, u)];
}

}  // namespace rackserve::sampling
