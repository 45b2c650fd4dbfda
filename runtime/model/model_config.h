// ModelConfig: the architecture of a Llama-family model, read from (and written as) a Hugging Face
// config.json.
//
// Supported: "architectures": ["LlamaForCausalLM"] (model_type "llama"), i.e. Llama 2 and
// Llama 3.x: grouped-query attention, RoPE with an optional "llama3" rope_scaling, SiLU MLP without
// biases, tied or untied embeddings. Anything else is rejected with INVALID_ARGUMENT naming the
// field.
//
// Reading config.json:
//   required   vocab_size, hidden_size, intermediate_size, num_hidden_layers,
//              num_attention_heads, max_position_embeddings, rms_norm_eps
//   optional   architectures, model_type, num_key_value_heads (default: num_attention_heads),
//              head_dim (default: hidden_size / num_attention_heads), rope_theta (10000),
//              rope_scaling (null: none), tie_word_embeddings (false), bos_token_id (1),
//              eos_token_id (2; an int, a list of ints, or null for none), torch_dtype
//              ("bfloat16"), hidden_act (must be "silu"), attention_bias / mlp_bias (must be false)
// A field holding JSON null takes its default, as in Hugging Face. Unknown fields are ignored.
//
// A value type; all methods are const and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rackserve::model {

// Hugging Face "rope_scaling". Only type "llama3" (Llama 3.1+) is supported; null, absent or
// rope_type "default" mean none.
struct RopeScaling {
  enum class Type { kNone, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;                              // >= 1; low frequencies are divided by it
  double low_freq_factor = 1.0;                     // > 0
  double high_freq_factor = 4.0;                    // > low_freq_factor
  int64_t original_max_position_embeddings = 8192;  // context length the model was trained at

  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // "architectures"[0]; only LlamaForCausalLM
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // MLP inner size (gate/up output features)
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads when absent (HF behaviour)
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads when absent
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = 1;
  std::vector<int32_t> eos_token_ids;    // HF eos_token_id may be an int or a list; may be empty
  std::string torch_dtype = "bfloat16";  // "bfloat16", "float16" or "float32"

  // Parses HF config.json text. `source` names the file in messages. Missing required field,
  // wrong JSON type, unknown architecture/model_type, unsupported rope_scaling type ->
  // INVALID_ARGUMENT naming the field and the source. Then Validate() (its errors are prefixed
  // with `source`).
  static absl::StatusOr<ModelConfig> FromJson(std::string_view json_text,
                                              std::string_view source = "config.json");
  // Reads and parses the file at `path`: NOT_FOUND if it does not exist; otherwise as FromJson.
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);

  // INVALID_ARGUMENT naming the field when: a size is not positive or implausibly large
  // (dimensions above 2^24, more than 4096 layers), num_attention_heads does not divide
  // hidden_size, num_key_value_heads does not divide num_attention_heads, head_dim is odd,
  // rms_norm_eps or rope_theta is not a positive finite number, rope_scaling is inconsistent,
  // a special token id lies outside [0, vocab_size), the architecture or torch_dtype is not
  // supported. Configs built in code must set num_key_value_heads and head_dim themselves.
  absl::Status Validate() const;

  // An HF-compatible config.json (indented, sorted keys) that FromJson reads back to an equal
  // ModelConfig.
  std::string ToJson() const;

  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }

  bool operator==(const ModelConfig&) const = default;
};

}  // namespace rackserve::model
