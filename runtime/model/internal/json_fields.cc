#include "runtime/model/internal/json_fields.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::model::internal {
namespace {

using nlohmann::json;

constexpr size_t kMaxQuotedValueChars = 40;

// A short rendering of `value` for messages: its JSON type and (truncated) text.
std::string Describe(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > kMaxQuotedValueChars) text = text.substr(0, kMaxQuotedValueChars) + "...";
  return absl::StrCat(value.type_name(), " ", text);
}

}  // namespace

JsonFields::JsonFields(const json& object, std::string_view source, std::string_view path_prefix)
    : object_(&object), source_(source), prefix_(path_prefix) {
  RS_CHECK(object.is_object());
}

absl::StatusOr<json> JsonFields::ParseObject(std::string_view text, std::string_view source) {
  json parsed = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": not valid JSON"));
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source), ": expected a JSON object at the top level, got ",
                     parsed.type_name()));
  }
  return parsed;
}

bool JsonFields::Has(std::string_view key) const { return object_->find(key) != object_->end(); }

const json* JsonFields::Find(std::string_view key) const {
  auto it = object_->find(key);
  if (it == object_->end() || it->is_null()) return nullptr;
  return &*it;
}

std::string JsonFields::Path(std::string_view key) const {
  return absl::StrCat(prefix_, std::string(key));
}

absl::Status JsonFields::Error(std::string_view key, std::string_view problem) const {
  return absl::InvalidArgumentError(
      absl::StrCat(source_, ": field \"", Path(key), "\" ", std::string(problem)));
}

absl::Status JsonFields::TypeError(std::string_view key, std::string_view expected,
                                   const json& value) const {
  return Error(key, absl::StrCat("expected ", std::string(expected), ", got ", Describe(value)));
}

absl::StatusOr<int64_t> JsonFields::Int64Value(std::string_view key, const json& value) const {
  if (!value.is_number_integer()) return TypeError(key, "an integer", value);
  if (value.is_number_unsigned() &&
      value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Error(key, absl::StrCat("is out of range: ", value.get<uint64_t>()));
  }
  return value.get<int64_t>();
}

absl::StatusOr<int64_t> JsonFields::Int64(std::string_view key) const {
  const json* value = Find(key);
  if (value == nullptr) return Error(key, "is required but missing");
  return Int64Value(key, *value);
}

absl::StatusOr<double> JsonFields::Double(std::string_view key) const {
  const json* value = Find(key);
  if (value == nullptr) return Error(key, "is required but missing");
  if (!value->is_number()) return TypeError(key, "a number", *value);
  return value->get<double>();
}

absl::StatusOr<int64_t> JsonFields::Int64Or(std::string_view key, int64_t fallback) const {
  const json* value = Find(key);
  if (value == nullptr) return fallback;
  return Int64Value(key, *value);
}

absl::StatusOr<double> JsonFields::DoubleOr(std::string_view key, double fallback) const {
  if (Find(key) == nullptr) return fallback;
  return Double(key);
}

absl::StatusOr<bool> JsonFields::BoolOr(std::string_view key, bool fallback) const {
  const json* value = Find(key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) return TypeError(key, "a boolean", *value);
  return value->get<bool>();
}

absl::StatusOr<std::string> JsonFields::StringOr(std::string_view key,
                                                 std::string_view fallback) const {
  const json* value = Find(key);
  if (value == nullptr) return std::string(fallback);
  if (!value->is_string()) return TypeError(key, "a string", *value);
  return value->get<std::string>();
}

absl::StatusOr<std::vector<std::string>> JsonFields::StringListOr(std::string_view key) const {
  std::vector<std::string> list;
  const json* value = Find(key);
  if (value == nullptr) return list;
  if (!value->is_array()) return TypeError(key, "an array of strings", *value);
  for (size_t i = 0; i < value->size(); ++i) {
    const json& element = (*value)[i];
    if (!element.is_string()) {
      return TypeError(absl::StrCat(std::string(key), "[", i, "]"), "a string", element);
    }
    list.push_back(element.get<std::string>());
  }
  return list;
}

absl::StatusOr<JsonFields> JsonFields::Object(std::string_view key) const {
  const json* value = Find(key);
  if (value == nullptr) return Error(key, "is required but missing");
  if (!value->is_object()) return TypeError(key, "an object", *value);
  return JsonFields(*value, source_, absl::StrCat(Path(key), "."));
}

}  // namespace rackserve::model::internal
