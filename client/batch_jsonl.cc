#include "client/batch_jsonl.h"

#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace rackserve::client {
namespace {

using Json = nlohmann::json;

// Reads the fields of one request line; every error names source, line and field.
class LineReader {
 public:
  LineReader(std::string_view source, int line) : source_(source), line_(line) {}

  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ":", line_, ": ", field, ": ", what));
  }

  absl::StatusOr<int64_t> Int(const Json& value, const std::string& field, int64_t min_value,
                              int64_t max_value) const {
    if (!value.is_number_integer()) return Error(field, "must be an integer");
    const int64_t v = value.is_number_unsigned() && value.get<uint64_t>() > INT64_MAX
                          ? INT64_MAX
                          : value.get<int64_t>();
    if (v < min_value || v > max_value) {
      return Error(field, absl::StrCat(v, " is outside [", min_value, ", ", max_value, "]"));
    }
    return v;
  }

  absl::StatusOr<double> Number(const Json& value, const std::string& field, double min_value,
                                double max_value) const {
    if (!value.is_number()) return Error(field, "must be a number");
    const double v = value.get<double>();
    if (!std::isfinite(v) || v < min_value || v > max_value) {
      return Error(field, absl::StrCat(v, " is outside [", min_value, ", ", max_value, "]"));
    }
    return v;
  }

  absl::StatusOr<std::vector<int32_t>> Ids(const Json& value, const std::string& field) const {
    if (!value.is_array()) return Error(field, "must be a list of integers");
    std::vector<int32_t> ids;
    for (size_t i = 0; i < value.size(); ++i) {
      absl::StatusOr<int64_t> id =
          Int(value[i], absl::StrCat(field, "[", i, "]"), 0, std::numeric_limits<int32_t>::max());
      if (!id.ok()) return id.status();
      ids.push_back(static_cast<int32_t>(*id));
    }
    return ids;
  }

 private:
  std::string source_;
  int line_;
};

absl::StatusOr<RequestSpec> ParseLine(const Json& object, const LineReader& r, int line) {
  RequestSpec spec;
  spec.id = absl::StrCat("line", line);
  bool has_prompt = false;
  for (const auto& [key, value] : object.items()) {
    if (key == "id") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        return r.Error(key, "must be a non-empty string");
      }
      spec.id = value.get<std::string>();
    } else if (key == "prompt") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        return r.Error(key, "must be a non-empty string");
      }
      if (has_prompt) return r.Error(key, "give prompt or prompt_ids, not both");
      spec.prompt = value.get<std::string>();
      has_prompt = true;
    } else if (key == "prompt_ids") {
      absl::StatusOr<std::vector<int32_t>> ids = r.Ids(value, key);
      if (!ids.ok()) return ids.status();
      if (ids->empty()) return r.Error(key, "must not be empty");
      if (has_prompt) return r.Error(key, "give prompt or prompt_ids, not both");
      spec.prompt_ids = *std::move(ids);
      has_prompt = true;
    } else if (key == "max_new_tokens") {
      absl::StatusOr<int64_t> v = r.Int(value, key, 1, 1 << 20);
      if (!v.ok()) return v.status();
      spec.max_new_tokens = *v;
    } else if (key == "temperature") {
      absl::StatusOr<double> v = r.Number(value, key, 0.0, 100.0);
      if (!v.ok()) return v.status();
      spec.temperature = static_cast<float>(*v);
    } else if (key == "top_p") {
      absl::StatusOr<double> v = r.Number(value, key, 0.0, 1.0);
      if (!v.ok()) return v.status();
      spec.top_p = static_cast<float>(*v);
    } else if (key == "top_k") {
      absl::StatusOr<int64_t> v = r.Int(value, key, 0, std::numeric_limits<int32_t>::max());
      if (!v.ok()) return v.status();
      spec.top_k = static_cast<int32_t>(*v);
    } else if (key == "seed") {
      absl::StatusOr<int64_t> v = r.Int(value, key, 0, std::numeric_limits<int64_t>::max());
      if (!v.ok()) return v.status();
      spec.seed = static_cast<uint64_t>(*v);
    } else if (key == "stop_token_ids") {
      absl::StatusOr<std::vector<int32_t>> ids = r.Ids(value, key);
      if (!ids.ok()) return ids.status();
      spec.stop_token_ids = *std::move(ids);
    } else if (key == "ignore_eos") {
      if (!value.is_boolean()) return r.Error(key, "must be true or false");
      spec.ignore_eos = value.get<bool>();
    } else {
      return r.Error(key, "unknown field");
    }
  }
  if (!has_prompt) return r.Error("prompt", "missing (give prompt or prompt_ids)");
  return spec;
}

}  // namespace

absl::StatusOr<std::vector<RequestSpec>> ParseRequestsJsonl(std::string_view text,
                                                            std::string_view source) {
  std::vector<RequestSpec> out;
  std::map<std::string, int> first_line;
  int line = 0;
  for (absl::string_view raw : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line;
    const absl::string_view stripped = absl::StripAsciiWhitespace(raw);
    if (stripped.empty()) continue;
    const LineReader r(source, line);
    const Json object = Json::parse(stripped.begin(), stripped.end(), nullptr, false);
    if (object.is_discarded()) return r.Error("(line)", "not valid JSON");
    if (!object.is_object()) return r.Error("(line)", "must be a JSON object");
    absl::StatusOr<RequestSpec> spec = ParseLine(object, r, line);
    if (!spec.ok()) return spec.status();
    auto [it, inserted] = first_line.emplace(spec->id, line);
    if (!inserted) {
      return r.Error("id",
                     absl::StrCat("duplicate \"", spec->id, "\" (first on line ", it->second, ")"));
    }
    out.push_back(*std::move(spec));
  }
  return out;
}

std::string ResultJsonLine(const RequestResult& result) {
  Json line = Json::object();
  line["id"] = result.id;
  line["token_ids"] = result.token_ids;
  if (result.has_text) line["text"] = result.text;
  line["finish_reason"] = result.finish_reason;
  line["prompt_tokens"] = result.prompt_tokens;
  line["timings"] = {{"queue_s", result.queue_seconds},
                     {"ttft_s", result.ttft_seconds},
                     {"total_s", result.total_seconds}};
  line["error"] = result.error.empty() ? Json(nullptr) : Json(result.error);
  return line.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace rackserve::client
