// ReferenceLlama: a plain float64 dense Llama forward pass, written for tests only.
//
// It shares nothing with the engine's ops: weights are the model's FP4 matrices dequantized once
// to double, attention is dense and causal over the whole sequence, RoPE is computed from the
// config with std::pow/cos/sin in double. Slow and obviously correct; used as ground truth.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model/llama_weights.h"

namespace rackserve::testing {

class ReferenceLlama {
 public:
  explicit ReferenceLlama(const model::LlamaWeights& weights);

  // Logits [tokens.size(), vocab] for every position of one sequence.
  std::vector<std::vector<double>> Forward(const std::vector<int32_t>& tokens) const;

 private:
  struct Layer {
    std::vector<double> input_norm, post_norm;
    std::vector<double> q, k, v, o, gate, up, down;  // dequantized, row-major [out, in]
  };
  const model::ModelConfig config_;
  std::vector<double> embed_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
};

}  // namespace rackserve::testing
