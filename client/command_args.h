// CommandArgs: the flags and positional arguments of one rackctl command.
//
// Flags are "--name VALUE", "--name=VALUE" or, for switches, "--name"; dashes and underscores in
// names are the same ("--max-new-tokens" == "--max_new_tokens"). Each command declares the flags
// it knows: anything else is INVALID_ARGUMENT naming the argument (rackctl exits 2: bad usage).
// A value of the wrong type is INVALID_ARGUMENT naming the flag and the value. A plain value.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::client {

class CommandArgs {
 public:
  // `value_flags` take a value, `switches` do not; names without the leading dashes, with dashes.
  static absl::StatusOr<CommandArgs> Parse(const std::vector<std::string>& args,
                                           const std::set<std::string>& value_flags,
                                           const std::set<std::string>& switches);

  const std::vector<std::string>& positional() const { return positional_; }
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Value(const std::string& name) const;

  std::string String(const std::string& name, const std::string& fallback) const;
  // An integer in [min_value, max_value].
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback, int64_t min_value,
                              int64_t max_value) const;
  // A finite number in [min_value, max_value].
  absl::StatusOr<double> Double(const std::string& name, double fallback, double min_value,
                                double max_value) const;
  // Comma- or space-separated integers ("1,2,3").
  absl::StatusOr<std::vector<int32_t>> IntList(const std::string& name) const;

 private:
  std::map<std::string, std::string> values_;  // switches map to ""
  std::vector<std::string> positional_;
};

}  // namespace rackserve::client
