#include "runtime/model/rope_frequencies.h"

#include <cmath>
#include <numbers>

#include "runtime/base/status_macros.h"

namespace rackserve::model {
namespace {

double Llama3Adjusted(double inv_freq, const RopeScaling& s) {
  const double original = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = original / s.low_freq_factor;
  const double high_freq_wavelen = original / s.high_freq_factor;
  const double wavelen = 2.0 * std::numbers::pi / inv_freq;
  if (wavelen < high_freq_wavelen) return inv_freq;
  if (wavelen > low_freq_wavelen) return inv_freq / s.factor;
  const double smooth =
      (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  return (1.0 - smooth) * inv_freq / s.factor + smooth * inv_freq;
}

}  // namespace

std::vector<double> RopeInvFrequencies(const ModelConfig& config) {
  RS_CHECK(config.head_dim > 0 && config.head_dim % 2 == 0);
  RS_CHECK(config.rope_theta > 0.0);
  const RopeScaling& scaling = config.rope_scaling;
  if (scaling.type == RopeScaling::Type::kLlama3) {
    RS_CHECK(scaling.factor >= 1.0 && scaling.low_freq_factor > 0.0 &&
             scaling.high_freq_factor > scaling.low_freq_factor &&
             scaling.original_max_position_embeddings > 0);
  }
  std::vector<double> inv_freq(config.head_dim / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double exponent = static_cast<double>(2 * i) / static_cast<double>(config.head_dim);
    inv_freq[i] = 1.0 / std::pow(config.rope_theta, exponent);
    if (scaling.type == RopeScaling::Type::kLlama3) {
      inv_freq[i] = Llama3Adjusted(inv_freq[i], scaling);
    }
  }
  return inv_freq;
}

}  // namespace rackserve::model
