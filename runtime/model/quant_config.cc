#include "runtime/model/quant_config.h"

#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/internal/json_fields.h"

namespace rackserve::model {
namespace {

using internal::JsonFields;
using nlohmann::json;

constexpr std::string_view kQuantConfigFile = "hf_quant_config.json";

// Glob match of `text` against `pattern`: '*' matches any run of characters, '?' any one.
bool GlobMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string_view::npos;  // position of the last '*' seen in pattern
  size_t star_text = 0;                  // text position that '*' is currently matched up to
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

absl::StatusOr<QuantConfig> QuantConfig::FromJson(std::string_view text, std::string_view source) {
  RS_ASSIGN_OR_RETURN(json root, JsonFields::ParseObject(text, source));
  const JsonFields top(root, source, "");
  RS_ASSIGN_OR_RETURN(JsonFields q, top.Object("quantization"));
  QuantConfig config;
  if (!q.Has("quant_algo")) {
    return q.Error("quant_algo", "is required but missing (null means not quantized)");
  }
  RS_ASSIGN_OR_RETURN(config.quant_algo, q.StringOr("quant_algo", ""));
  RS_ASSIGN_OR_RETURN(int64_t group_size, q.Int64Or("group_size", config.group_size));
  if (group_size <= 0 || group_size > std::numeric_limits<int>::max()) {
    return q.Error("group_size",
                   absl::StrCat("= ", group_size, " must be positive (and fit an int)"));
  }
  config.group_size = static_cast<int>(group_size);
  RS_ASSIGN_OR_RETURN(config.exclude_modules, q.StringListOr("exclude_modules"));
  return config;
}

absl::StatusOr<std::optional<QuantConfig>> QuantConfig::FromModelDir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such model directory"));
  }
  const std::string path = absl::StrCat(dir, "/", std::string(kQuantConfigFile));
  if (!std::filesystem::exists(path, ec)) return std::optional<QuantConfig>();
  RS_ASSIGN_OR_RETURN(std::string text, internal::ReadFileContents(path));
  RS_ASSIGN_OR_RETURN(QuantConfig config, FromJson(text, path));
  return std::optional<QuantConfig>(std::move(config));
}

std::string QuantConfig::ToJson() const {
  json quantization = {{"quant_algo", nullptr},
                       {"kv_cache_quant_algo", nullptr},
                       {"group_size", group_size},
                       {"exclude_modules", exclude_modules}};
  if (!quant_algo.empty()) quantization["quant_algo"] = quant_algo;
  const json j = {{"producer", {{"name", "rackserve"}, {"version", RACKSERVE_VERSION}}},
                  {"quantization", quantization}};
  return j.dump(4, ' ', false, json::error_handler_t::replace) + "\n";
}

bool QuantConfig::IsExcluded(std::string_view module) const {
  for (const std::string& pattern : exclude_modules) {
    if (GlobMatch(pattern, module)) return true;
  }
  return false;
}

}  // namespace rackserve::model
