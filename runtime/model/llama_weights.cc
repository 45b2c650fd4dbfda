#include "runtime/model/llama_weights.h"

#include <atomic>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/io/checkpoint.h"
#include "runtime/model/modelopt_nvfp4.h"

namespace rackserve::model {

std::string LayerModuleName(int64_t layer, std::string_view suffix) {
  return absl::StrCat("model.layers.", layer, ".", std::string(suffix));
}

LinearShape LlamaLinearShape(const ModelConfig& c, std::string_view suffix) {
  if (suffix == "self_attn.q_proj") return {c.q_size(), c.hidden_size};
  if (suffix == "self_attn.k_proj" || suffix == "self_attn.v_proj") {
    return {c.kv_size(), c.hidden_size};
  }
  if (suffix == "self_attn.o_proj") return {c.hidden_size, c.q_size()};
  if (suffix == "mlp.gate_proj" || suffix == "mlp.up_proj") {
    return {c.intermediate_size, c.hidden_size};
  }
  RS_CHECK(suffix == "mlp.down_proj");
  return {c.hidden_size, c.intermediate_size};
}

namespace {

absl::StatusOr<numerics::Fp4Matrix> LoadLinear(const io::Checkpoint& checkpoint,
                                               const std::string& module, LinearShape shape,
                                               numerics::Fp4Format format) {
  if (IsNvfp4Linear(checkpoint, module)) {
    return ReadNvfp4Linear(checkpoint, module, shape.rows, shape.cols);
  }
  const std::string name = module + ".weight";
  const int64_t dims[] = {shape.rows, shape.cols};
  RS_ASSIGN_OR_RETURN(std::vector<float> values, checkpoint.ReadFloat(name, dims));
  return numerics::QuantizeFp4(values, shape.rows, shape.cols, format,
                               absl::StrCat(checkpoint.FileOf(name), ": ", name));
}

}  // namespace

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const std::string& dir, const LoadOptions& options) {
  LlamaWeights w;
  RS_ASSIGN_OR_RETURN(w.config, ModelConfig::FromFile(dir + "/config.json"));
  RS_RETURN_IF_ERROR(CheckSupportedQuantConfig(dir));
  RS_ASSIGN_OR_RETURN(std::unique_ptr<io::Checkpoint> checkpoint, io::Checkpoint::Open(dir));
  const ModelConfig& c = w.config;

  const int64_t embed_shape[] = {c.vocab_size, c.hidden_size};
  const int64_t norm_shape[] = {c.hidden_size};
  RS_ASSIGN_OR_RETURN(w.embed_tokens,
                      checkpoint->ReadFloat("model.embed_tokens.weight", embed_shape));
  RS_ASSIGN_OR_RETURN(w.final_norm, checkpoint->ReadFloat("model.norm.weight", norm_shape));
  if (!c.tie_word_embeddings) {
    RS_ASSIGN_OR_RETURN(w.lm_head, checkpoint->ReadFloat("lm_head.weight", embed_shape));
  }

  w.layers.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    RS_ASSIGN_OR_RETURN(
        w.layers[i].input_norm,
        checkpoint->ReadFloat(LayerModuleName(i, "input_layernorm.weight"), norm_shape));
    RS_ASSIGN_OR_RETURN(
        w.layers[i].post_attention_norm,
        checkpoint->ReadFloat(LayerModuleName(i, "post_attention_layernorm.weight"), norm_shape));
  }

  // Linear layers: the bulk of the work when quantizing at load, spread over the pool.
  const int64_t num_linears =
      c.num_hidden_layers * static_cast<int64_t>(kLlamaLinearModules.size());
  std::mutex error_mu;
  absl::Status first_error;
  auto load_range = [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t layer = k / static_cast<int64_t>(kLlamaLinearModules.size());
      const size_t slot = k % kLlamaLinearModules.size();
      const std::string_view suffix = kLlamaLinearModules[slot];
      auto linear = LoadLinear(*checkpoint, LayerModuleName(layer, suffix),
                               LlamaLinearShape(c, suffix), options.quantize_format);
      if (!linear.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.ok()) first_error = linear.status();
        continue;
      }
      w.layers[layer].linears[slot] = *std::move(linear);
    }
  };
  if (options.pool != nullptr) {
    options.pool->ParallelFor(num_linears, 1, load_range);
  } else {
    load_range(0, num_linears);
  }
  RS_RETURN_IF_ERROR(first_error);
  return w;
}

}  // namespace rackserve::model
