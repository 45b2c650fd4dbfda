// RopeInvFrequencies: the rotary position embedding (RoPE) inverse frequencies of a model.
//
// inv_freq[i] = rope_theta^(-2i / head_dim) for i in [0, head_dim / 2); dimension pair i of a query
// or key at position p is rotated by the angle p * inv_freq[i] (radians).
//
// With rope_scaling "llama3" (Llama 3.1+), each frequency is adjusted by its wavelength
// w = 2*pi / inv_freq, with L = original_max_position_embeddings:
//   w < L / high_freq_factor   kept (high frequencies)
//   w > L / low_freq_factor    divided by factor (low frequencies)
//   otherwise                  (1 - s) * inv_freq / factor + s * inv_freq, where
//                              s = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor)
// -- the formula of Hugging Face's _compute_llama3_parameters, evaluated in double precision.
//
// Precondition: config.Validate() is OK (head_dim even and positive, rope_scaling consistent);
// a config that breaks it aborts. Pure and thread-safe.
#pragma once

#include <vector>

#include "runtime/model/model_config.h"

namespace rackserve::model {

// head_dim / 2 values.
std::vector<double> RopeInvFrequencies(const ModelConfig& config);

}  // namespace rackserve::model
