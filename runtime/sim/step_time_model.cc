#include "runtime/sim/step_time_model.h"

#include <algorithm>

#include "runtime/base/status_macros.h"

namespace rackserve::sim {
namespace {

constexpr double kBf16Bytes = 2;
constexpr int64_t kKvElementBytes = 1;  // FP8 (E4M3) KV cache

}  // namespace

absl::StatusOr<StepTimeModel> StepTimeModel::Create(const model::ModelConfig& config,
                                                    const GpuProfile& profile) {
  RS_RETURN_IF_ERROR(profile.Validate());
  RS_RETURN_IF_ERROR(config.Validate());
  StepTimeModel m;
  m.profile_ = profile;
  const double hidden = static_cast<double>(config.hidden_size);
  const double per_layer = hidden * static_cast<double>(config.q_size() + 2 * config.kv_size()) +
                           static_cast<double>(config.q_size()) * hidden +
                           3 * hidden * static_cast<double>(config.intermediate_size);
  m.decoder_linear_params_ = per_layer * static_cast<double>(config.num_hidden_layers);
  m.lm_head_params_ = static_cast<double>(config.vocab_size) * hidden;
  const double decoder_bytes = m.decoder_linear_params_ * profile.weight_bytes_per_param;
  const double lm_head_bytes = m.lm_head_params_ * kBf16Bytes;
  m.streamed_weight_bytes_ = decoder_bytes + lm_head_bytes;
  const double embedding_bytes = config.tie_word_embeddings ? 0 : lm_head_bytes;
  m.resident_weight_bytes_ = static_cast<int64_t>(m.streamed_weight_bytes_ + embedding_bytes);
  m.kv_bytes_per_token_ = 2 * config.num_hidden_layers * config.kv_size() * kKvElementBytes;
  m.attention_flops_per_pair_ =
      4.0 * static_cast<double>(config.q_size()) * static_cast<double>(config.num_hidden_layers);
  return m;
}

StepTime StepTimeModel::Estimate(std::span<const ChunkShape> chunks) const {
  StepTime t;
  if (chunks.empty()) return t;
  double tokens = 0, sampling = 0, kv_positions = 0, pairs = 0;
  for (const ChunkShape& c : chunks) {
    RS_CHECK(c.start >= 0 && c.count >= 1);
    const double start = static_cast<double>(c.start);
    const double count = static_cast<double>(c.count);
    tokens += count;
    sampling += c.samples ? 1 : 0;
    kv_positions += start + 2 * count;  // read [0, start + count), write count
    pairs += count * start + count * (count + 1) / 2;
  }
  const double bandwidth = profile_.hbm_bytes_per_s * profile_.bandwidth_efficiency;
  const double linear_rate = profile_.linear_flops_per_s * profile_.compute_efficiency;
  const double attention_rate = profile_.attention_flops_per_s * profile_.compute_efficiency;

  const double weight_s = streamed_weight_bytes_ / bandwidth;
  const double linear_flops_s =
      (2 * decoder_linear_params_ * tokens + 2 * lm_head_params_ * sampling) / linear_rate;
  t.linear_compute_bound = linear_flops_s > weight_s;
  t.linear_s = std::max(weight_s, linear_flops_s);
  const double kv_s = kv_positions * static_cast<double>(kv_bytes_per_token_) / bandwidth;
  const double attention_flops_s = pairs * attention_flops_per_pair_ / attention_rate;
  t.attention_s = std::max(kv_s, attention_flops_s);
  t.overhead_s = profile_.step_overhead_s;
  t.total_s = t.linear_s + t.attention_s + t.overhead_s;
  return t;
}

int64_t StepTimeModel::kv_capacity_tokens() const {
  const double usable = static_cast<double>(profile_.hbm_bytes) * profile_.memory_utilization -
                        static_cast<double>(resident_weight_bytes_);
  if (usable <= 0) return 0;
  return static_cast<int64_t>(usable / static_cast<double>(kv_bytes_per_token_));
}

}  // namespace rackserve::sim
