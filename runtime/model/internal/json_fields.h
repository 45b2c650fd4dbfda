// JsonFields: typed reads of the fields of one JSON object, for the parsers of Hugging Face and
// ModelOpt configuration files. Nothing throws: a field of the wrong type, or a required field that
// is missing, is INVALID_ARGUMENT whose message names the source file and the field's path
// ("config.json: field \"rope_scaling.factor\": expected a number, got string \"8\"").
//
// A field whose value is JSON null counts as absent (Hugging Face writes null for "use the
// default"). JsonFields borrows the object: it must outlive the JsonFields. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace rackserve::model::internal {

class JsonFields {
 public:
  // `object` must be a JSON object (RS_CHECKed; callers check with ParseObject / Object).
  // `path_prefix` is prepended to field names in messages ("rope_scaling.").
  JsonFields(const nlohmann::json& object, std::string_view source, std::string_view path_prefix);

  // Parses `text` and checks that it is a JSON object; INVALID_ARGUMENT naming `source` otherwise.
  static absl::StatusOr<nlohmann::json> ParseObject(std::string_view text, std::string_view source);

  // True when `key` is present, even if null.
  bool Has(std::string_view key) const;
  // The value of `key`, or nullptr when absent or null.
  const nlohmann::json* Find(std::string_view key) const;

  // Required fields: INVALID_ARGUMENT when absent, null or of the wrong type.
  absl::StatusOr<int64_t> Int64(std::string_view key) const;
  absl::StatusOr<double> Double(std::string_view key) const;  // any JSON number
  // Optional fields: `fallback` when absent or null; INVALID_ARGUMENT when of the wrong type.
  absl::StatusOr<int64_t> Int64Or(std::string_view key, int64_t fallback) const;
  absl::StatusOr<double> DoubleOr(std::string_view key, double fallback) const;
  absl::StatusOr<bool> BoolOr(std::string_view key, bool fallback) const;
  absl::StatusOr<std::string> StringOr(std::string_view key, std::string_view fallback) const;
  // An optional array of strings; empty when absent or null.
  absl::StatusOr<std::vector<std::string>> StringListOr(std::string_view key) const;
  // A required nested object: INVALID_ARGUMENT when absent, null or not an object.
  absl::StatusOr<JsonFields> Object(std::string_view key) const;

  // `value` (of the field named `key`, e.g. "eos_token_id[1]") as an integer; INVALID_ARGUMENT
  // when it is not an integer in the int64 range.
  absl::StatusOr<int64_t> Int64Value(std::string_view key, const nlohmann::json& value) const;

  // INVALID_ARGUMENT "<source>: field \"<prefix><key>\" <problem>".
  absl::Status Error(std::string_view key, std::string_view problem) const;
  // "<prefix><key>", the name messages use for `key`.
  std::string Path(std::string_view key) const;

 private:
  absl::Status TypeError(std::string_view key, std::string_view expected,
                         const nlohmann::json& value) const;

  const nlohmann::json* object_;
  std::string source_;
  std::string prefix_;
};

}  // namespace rackserve::model::internal
