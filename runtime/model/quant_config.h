// QuantConfig: the hf_quant_config.json that NVIDIA ModelOpt writes next to a pre-quantized
// Hugging Face checkpoint, e.g.
//   {"producer": {"name": "modelopt", "version": "0.19.0"},
//    "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": null, "group_size": 16,
//                     "exclude_modules": ["lm_head"]}}
// "quantization" is required; inside it "quant_algo" is required (null: not quantized),
// "group_size" defaults to 16 and "exclude_modules" to none. "producer" and
// "kv_cache_quant_algo" are not interpreted. Any quant_algo string is parsed: rackserve loads only
// "NVFP4" pre-quantized, and the loader rejects the others by name.
//
// A value type; all methods are const and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::model {

struct QuantConfig {
  std::string quant_algo;  // "NVFP4" (the only algo rackserve loads pre-quantized) or "" none
  int group_size = 16;     // elements per block scale; positive
  // Modules left unquantized: exact names ("lm_head") or glob patterns with '*' and '?'
  // ("model.layers.*.mlp.gate_proj").
  std::vector<std::string> exclude_modules;

  // INVALID_ARGUMENT naming `source` and the field for malformed JSON, a missing required field,
  // a wrong type or a non-positive group_size.
  static absl::StatusOr<QuantConfig> FromJson(std::string_view text, std::string_view source);
  // Reads `<dir>/hf_quant_config.json`; std::nullopt when that file is absent, NOT_FOUND when
  // `dir` itself does not exist; otherwise as FromJson.
  static absl::StatusOr<std::optional<QuantConfig>> FromModelDir(const std::string& dir);
  // The ModelOpt format above with producer {"name": "rackserve", "version": <rackserve version>};
  // an empty quant_algo is written as null. FromJson reads it back to an equal QuantConfig.
  std::string ToJson() const;

  // True when `module` (e.g. "lm_head", "model.layers.0.mlp.down_proj") matches an entry of
  // exclude_modules.
  bool IsExcluded(std::string_view module) const;

  bool operator==(const QuantConfig&) const = default;
};

}  // namespace rackserve::model
