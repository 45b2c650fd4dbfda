#include "runtime/model/model_config.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/internal/json_fields.h"

namespace rackserve::model {
namespace {

using internal::JsonFields;
using nlohmann::json;

constexpr std::string_view kLlamaArchitecture = "LlamaForCausalLM";
constexpr std::string_view kLlamaModelType = "llama";
constexpr int64_t kMaxDimension = int64_t{1} << 24;
constexpr int64_t kMaxLayers = 4096;
constexpr int32_t kDefaultEosTokenId = 2;  // LlamaConfig's default when eos_token_id is absent

absl::Status FieldError(std::string_view field, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("field \"", std::string(field), "\" ", problem));
}

absl::Status CheckDimension(std::string_view field, int64_t value, int64_t max) {
  if (value <= 0 || value > max) {
    return FieldError(field, absl::StrCat("= ", value, " is outside [1, ", max, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckPositiveFinite(std::string_view field, double value) {
  if (!(std::isfinite(value) && value > 0.0)) {
    return FieldError(field, absl::StrCat("= ", value, " must be a positive finite number"));
  }
  return absl::OkStatus();
}

absl::Status CheckTokenId(std::string_view field, int64_t id, int64_t vocab_size) {
  if (id < 0 || id >= vocab_size) {
    return FieldError(field,
                      absl::StrCat("= ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckRopeScaling(const RopeScaling& s) {
  if (s.type == RopeScaling::Type::kNone) return absl::OkStatus();
  if (!(std::isfinite(s.factor) && s.factor >= 1.0)) {
    return FieldError("rope_scaling.factor", absl::StrCat("= ", s.factor, " must be >= 1"));
  }
  RS_RETURN_IF_ERROR(CheckPositiveFinite("rope_scaling.low_freq_factor", s.low_freq_factor));
  RS_RETURN_IF_ERROR(CheckPositiveFinite("rope_scaling.high_freq_factor", s.high_freq_factor));
  if (s.high_freq_factor <= s.low_freq_factor) {
    return FieldError(
        "rope_scaling.high_freq_factor",
        absl::StrCat("= ", s.high_freq_factor,
                     " must be greater than rope_scaling.low_freq_factor = ", s.low_freq_factor));
  }
  return CheckDimension("rope_scaling.original_max_position_embeddings",
                        s.original_max_position_embeddings, kMaxDimension);
}

absl::StatusOr<int32_t> ToTokenId(const JsonFields& fields, std::string_view key, int64_t value) {
  if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
    return fields.Error(key, absl::StrCat("= ", value, " is not a valid token id"));
  }
  return static_cast<int32_t>(value);
}

absl::Status ParseArchitecture(const JsonFields& f, ModelConfig& c) {
  if (const json* list = f.Find("architectures")) {
    if (!list->is_array() || list->empty() || !(*list)[0].is_string()) {
      return f.Error("architectures", "must be a non-empty array of strings");
    }
    c.architecture = (*list)[0].get<std::string>();
    if (c.architecture != kLlamaArchitecture) {
      return f.Error("architectures",
                     absl::StrCat("names \"", c.architecture, "\"; only ",
                                  std::string(kLlamaArchitecture), " is supported"));
    }
  }
  RS_ASSIGN_OR_RETURN(std::string model_type, f.StringOr("model_type", kLlamaModelType));
  if (model_type != kLlamaModelType) {
    return f.Error("model_type", absl::StrCat("is \"", model_type, "\"; only \"",
                                              std::string(kLlamaModelType), "\" is supported"));
  }
  return absl::OkStatus();
}

// The features rackserve does not implement must be absent or say they are off.
absl::Status CheckUnsupportedFeatures(const JsonFields& f) {
  RS_ASSIGN_OR_RETURN(std::string act, f.StringOr("hidden_act", "silu"));
  if (act != "silu") {
    return f.Error("hidden_act", absl::StrCat("is \"", act, "\"; only \"silu\" is supported"));
  }
  for (std::string_view bias : {"attention_bias", "mlp_bias"}) {
    RS_ASSIGN_OR_RETURN(bool has_bias, f.BoolOr(bias, false));
    if (has_bias) return f.Error(bias, "is true; biases are not supported");
  }
  return absl::OkStatus();
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const JsonFields& f) {
  RopeScaling scaling;
  if (f.Find("rope_scaling") == nullptr) return scaling;
  RS_ASSIGN_OR_RETURN(JsonFields s, f.Object("rope_scaling"));
  // Newer Hugging Face configs say "rope_type", older ones "type".
  const std::string_view type_key = s.Find("rope_type") != nullptr ? "rope_type" : "type";
  RS_ASSIGN_OR_RETURN(std::string type, s.StringOr(type_key, ""));
  if (type.empty()) return s.Error("rope_type", "is required but missing");
  if (type == "default") return scaling;
  if (type != "llama3") {
    return s.Error(
        type_key, absl::StrCat("is \"", type, "\"; only \"llama3\" (or \"default\") is supported"));
  }
  scaling.type = RopeScaling::Type::kLlama3;
  RS_ASSIGN_OR_RETURN(scaling.factor, s.Double("factor"));
  RS_ASSIGN_OR_RETURN(scaling.low_freq_factor, s.Double("low_freq_factor"));
  RS_ASSIGN_OR_RETURN(scaling.high_freq_factor, s.Double("high_freq_factor"));
  RS_ASSIGN_OR_RETURN(scaling.original_max_position_embeddings,
                      s.Int64("original_max_position_embeddings"));
  return scaling;
}

// eos_token_id: absent -> LlamaConfig's default 2; null -> none; an int or a list of ints.
absl::StatusOr<std::vector<int32_t>> ParseEosTokenIds(const JsonFields& f) {
  if (!f.Has("eos_token_id")) return std::vector<int32_t>{kDefaultEosTokenId};
  std::vector<int32_t> ids;
  const json* value = f.Find("eos_token_id");
  if (value == nullptr) return ids;
  if (!value->is_array()) {
    RS_ASSIGN_OR_RETURN(int64_t id, f.Int64Value("eos_token_id", *value));
    RS_ASSIGN_OR_RETURN(int32_t token, ToTokenId(f, "eos_token_id", id));
    ids.push_back(token);
    return ids;
  }
  for (size_t i = 0; i < value->size(); ++i) {
    const std::string key = absl::StrCat("eos_token_id[", i, "]");
    RS_ASSIGN_OR_RETURN(int64_t id, f.Int64Value(key, (*value)[i]));
    RS_ASSIGN_OR_RETURN(int32_t token, ToTokenId(f, key, id));
    ids.push_back(token);
  }
  return ids;
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::FromJson(std::string_view json_text,
                                                  std::string_view source) {
  RS_ASSIGN_OR_RETURN(json root, JsonFields::ParseObject(json_text, source));
  const JsonFields f(root, source, "");
  ModelConfig c;
  RS_RETURN_IF_ERROR(ParseArchitecture(f, c));
  RS_RETURN_IF_ERROR(CheckUnsupportedFeatures(f));
  RS_ASSIGN_OR_RETURN(c.vocab_size, f.Int64("vocab_size"));
  RS_ASSIGN_OR_RETURN(c.hidden_size, f.Int64("hidden_size"));
  RS_ASSIGN_OR_RETURN(c.intermediate_size, f.Int64("intermediate_size"));
  RS_ASSIGN_OR_RETURN(c.num_hidden_layers, f.Int64("num_hidden_layers"));
  RS_ASSIGN_OR_RETURN(c.num_attention_heads, f.Int64("num_attention_heads"));
  RS_ASSIGN_OR_RETURN(c.num_key_value_heads,
                      f.Int64Or("num_key_value_heads", c.num_attention_heads));
  const int64_t default_head_dim =
      c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
  RS_ASSIGN_OR_RETURN(c.head_dim, f.Int64Or("head_dim", default_head_dim));
  RS_ASSIGN_OR_RETURN(c.max_position_embeddings, f.Int64("max_position_embeddings"));
  RS_ASSIGN_OR_RETURN(c.rms_norm_eps, f.Double("rms_norm_eps"));
  RS_ASSIGN_OR_RETURN(c.rope_theta, f.DoubleOr("rope_theta", c.rope_theta));
  RS_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(f));
  RS_ASSIGN_OR_RETURN(c.tie_word_embeddings,
                      f.BoolOr("tie_word_embeddings", c.tie_word_embeddings));
  RS_ASSIGN_OR_RETURN(int64_t bos, f.Int64Or("bos_token_id", c.bos_token_id));
  RS_ASSIGN_OR_RETURN(c.bos_token_id, ToTokenId(f, "bos_token_id", bos));
  RS_ASSIGN_OR_RETURN(c.eos_token_ids, ParseEosTokenIds(f));
  RS_ASSIGN_OR_RETURN(c.torch_dtype, f.StringOr("torch_dtype", c.torch_dtype));
  if (absl::Status valid = c.Validate(); !valid.ok()) {
    return absl::Status(valid.code(), absl::StrCat(std::string(source), ": ", valid.message()));
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  RS_ASSIGN_OR_RETURN(std::string text, internal::ReadFileContents(path));
  return FromJson(text, path);
}

absl::Status ModelConfig::Validate() const {
  if (architecture != kLlamaArchitecture) {
    return FieldError("architectures",
                      absl::StrCat("names \"", architecture, "\"; only ",
                                   std::string(kLlamaArchitecture), " is supported"));
  }
  RS_RETURN_IF_ERROR(CheckDimension("vocab_size", vocab_size, kMaxDimension));
  RS_RETURN_IF_ERROR(CheckDimension("hidden_size", hidden_size, kMaxDimension));
  RS_RETURN_IF_ERROR(CheckDimension("intermediate_size", intermediate_size, kMaxDimension));
  RS_RETURN_IF_ERROR(CheckDimension("num_hidden_layers", num_hidden_layers, kMaxLayers));
  RS_RETURN_IF_ERROR(CheckDimension("num_attention_heads", num_attention_heads, hidden_size));
  RS_RETURN_IF_ERROR(
      CheckDimension("num_key_value_heads", num_key_value_heads, num_attention_heads));
  RS_RETURN_IF_ERROR(CheckDimension("head_dim", head_dim, kMaxDimension));
  RS_RETURN_IF_ERROR(
      CheckDimension("max_position_embeddings", max_position_embeddings, kMaxDimension));
  if (hidden_size % num_attention_heads != 0) {
    return FieldError(
        "num_attention_heads",
        absl::StrCat("= ", num_attention_heads, " does not divide hidden_size = ", hidden_size));
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return FieldError("num_key_value_heads",
                      absl::StrCat("= ", num_key_value_heads,
                                   " does not divide num_attention_heads = ", num_attention_heads));
  }
  if (head_dim % 2 != 0) {
    return FieldError("head_dim",
                      absl::StrCat("= ", head_dim, " must be even (RoPE rotates pairs)"));
  }
  RS_RETURN_IF_ERROR(CheckPositiveFinite("rms_norm_eps", rms_norm_eps));
  RS_RETURN_IF_ERROR(CheckPositiveFinite("rope_theta", rope_theta));
  RS_RETURN_IF_ERROR(CheckRopeScaling(rope_scaling));
  RS_RETURN_IF_ERROR(CheckTokenId("bos_token_id", bos_token_id, vocab_size));
  for (size_t i = 0; i < eos_token_ids.size(); ++i) {
    RS_RETURN_IF_ERROR(
        CheckTokenId(absl::StrCat("eos_token_id[", i, "]"), eos_token_ids[i], vocab_size));
  }
  if (torch_dtype != "bfloat16" && torch_dtype != "float16" && torch_dtype != "float32") {
    return FieldError("torch_dtype", absl::StrCat("is \"", torch_dtype,
                                                  "\"; expected bfloat16, float16 or float32"));
  }
  return absl::OkStatus();
}

std::string ModelConfig::ToJson() const {
  json j = json::object();
  j["architectures"] = json::array({architecture});
  j["model_type"] = kLlamaModelType;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type == RopeScaling::Type::kLlama3) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", rope_scaling.factor},
        {"low_freq_factor", rope_scaling.low_freq_factor},
        {"high_freq_factor", rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else if (eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else {
    j["eos_token_id"] = eos_token_ids;
  }
  j["torch_dtype"] = torch_dtype;
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace rackserve::model
