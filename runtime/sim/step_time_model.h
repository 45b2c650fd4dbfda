// StepTimeModel: how long one engine step takes on a simulated GPU — a roofline model of a Llama
// forward pass from the batch's shape alone (no tensors).
//
// For a step whose chunks compute positions [start, start + count) of their sequences:
//   linear    = max(weight bytes / bandwidth, linear FLOPs / linear rate)
//               weight bytes: decoder linears at profile.weight_bytes_per_param, lm_head bf16;
//               linear FLOPs: 2 * decoder linear params * all tokens
//                             + 2 * lm_head params * sampling chunks
//   attention = max(KV bytes / bandwidth, attention FLOPs / attention rate)
//               KV bytes: each chunk reads the KV of positions [0, start + count) once and writes
//               its count new positions, FP8 (1 byte per element);
//               attention FLOPs: causal, 4 * q_size * layers per (query, key) pair
//               (QK^T and PV), i.e. count * start + count * (count + 1) / 2 pairs per chunk
//   total     = linear + attention + profile.step_overhead_s
// Bandwidths and rates are the profile's peaks times its efficiency factors. Seconds throughout.
// A pure function of its inputs: immutable after Create(), safe to share across threads.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/sim/gpu_profile.h"

namespace rackserve::sim {

// One sequence's share of a step.
struct ChunkShape {
  int64_t start = 0;     // positions already in the KV cache, >= 0
  int64_t count = 0;     // positions computed this step, >= 1
  bool samples = false;  // the chunk's last position produces a token (runs the lm_head)
};

struct StepTime {
  double linear_s = 0;
  double attention_s = 0;
  double overhead_s = 0;
  double total_s = 0;
  bool linear_compute_bound = false;  // the linear term was FLOP-bound, not bandwidth-bound
};

class StepTimeModel {
 public:
  // INVALID_ARGUMENT from profile.Validate() or config.Validate().
  static absl::StatusOr<StepTimeModel> Create(const model::ModelConfig& config,
                                              const GpuProfile& profile);

  // The modeled time of one step over `chunks` (any order). An empty batch costs nothing.
  // Chunks must have start >= 0 and count >= 1 (checked: a programming error otherwise).
  StepTime Estimate(std::span<const ChunkShape> chunks) const;

  // Bytes the weights occupy on the device: decoder linears at weight_bytes_per_param, embedding
  // and (untied) lm_head bf16, norms fp32-negligible and ignored.
  int64_t weight_bytes() const { return resident_weight_bytes_; }
  // KV cache bytes per token position, FP8: 2 (K, V) * layers * kv heads * head_dim.
  int64_t kv_bytes_per_token() const { return kv_bytes_per_token_; }
  // KV positions the device holds: (hbm_bytes * memory_utilization - weight_bytes) /
  // kv_bytes_per_token; 0 when the weights alone do not fit.
  int64_t kv_capacity_tokens() const;
  const GpuProfile& profile() const { return profile_; }

 private:
  StepTimeModel() = default;

  GpuProfile profile_;
  double decoder_linear_params_ = 0;
  double lm_head_params_ = 0;
  double streamed_weight_bytes_ = 0;  // read once per step: decoder linears + lm_head
  int64_t resident_weight_bytes_ = 0;
  int64_t kv_bytes_per_token_ = 0;
  double attention_flops_per_pair_ = 0;
};

}  // namespace rackserve::sim
