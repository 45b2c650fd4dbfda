#include "runtime/parallel/world_config.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace rackserve::parallel {

absl::StatusOr<WorldConfig> WorldConfig::Create(int tp, int pp, int rank) {
  if (tp < 1) return absl::InvalidArgumentError(absl::StrCat("tp ", tp, " must be at least 1"));
  if (pp < 1) return absl::InvalidArgumentError(absl::StrCat("pp ", pp, " must be at least 1"));
  const int64_t size = int64_t{tp} * pp;
  if (size > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp ", tp, " x pp ", pp, " = ", size, " ranks does not fit an int"));
  }
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside [0, ", size, ") for tp ", tp, " x pp ", pp));
  }
  WorldConfig world;
  world.tp = tp;
  world.pp = pp;
  world.rank = rank;
  return world;
}

std::string WorldConfig::Layout() const { return absl::StrCat("tp", tp, "-pp", pp); }

}  // namespace rackserve::parallel
