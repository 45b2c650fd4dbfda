#include "client/command_args.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rackserve::client {
namespace {

std::string Canonical(std::string name) {
  for (char& c : name) {
    if (c == '_') c = '-';
  }
  return name;
}

}  // namespace

absl::StatusOr<CommandArgs> CommandArgs::Parse(const std::vector<std::string>& args,
                                               const std::set<std::string>& value_flags,
                                               const std::set<std::string>& switches) {
  CommandArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      out.positional_.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = Canonical(arg.substr(2, eq == std::string::npos ? eq : eq - 2));
    if (switches.count(name) > 0) {
      if (eq != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value: ", arg));
      }
      out.values_[name] = "";
    } else if (value_flags.count(name) > 0) {
      if (eq != std::string::npos) {
        out.values_[name] = arg.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        out.values_[name] = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
  }
  return out;
}

std::optional<std::string> CommandArgs::Value(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string CommandArgs::String(const std::string& name, const std::string& fallback) const {
  return Value(name).value_or(fallback);
}

absl::StatusOr<int64_t> CommandArgs::Int(const std::string& name, int64_t fallback,
                                         int64_t min_value, int64_t max_value) const {
  const std::optional<std::string> text = Value(name);
  if (!text) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": not an integer: \"", *text, "\""));
  }
  if (value < min_value || value > max_value) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": ", value, " is outside [", min_value, ", ", max_value, "]"));
  }
  return value;
}

absl::StatusOr<double> CommandArgs::Double(const std::string& name, double fallback,
                                           double min_value, double max_value) const {
  const std::optional<std::string> text = Value(name);
  if (!text) return fallback;
  double value = 0;
  if (!absl::SimpleAtod(*text, &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": not a number: \"", *text, "\""));
  }
  if (value < min_value || value > max_value) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": ", *text, " is outside [", min_value, ", ", max_value, "]"));
  }
  return value;
}

absl::StatusOr<std::vector<int32_t>> CommandArgs::IntList(const std::string& name) const {
  std::vector<int32_t> out;
  const std::optional<std::string> text = Value(name);
  if (!text) return out;
  for (absl::string_view part : absl::StrSplit(*text, absl::ByAnyChar(", "), absl::SkipEmpty())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": not an integer: \"", std::string(part), "\""));
    }
    out.push_back(id);
  }
  return out;
}

}  // namespace rackserve::client
