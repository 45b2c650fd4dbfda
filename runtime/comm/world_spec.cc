#include "runtime/comm/world_spec.h"

#include "absl/strings/str_cat.h"

namespace rackserve::comm {
namespace {

// FAILED_PRECONDITION: `field` is `mine` on my_rank but `theirs` on their_rank.
template <typename T>
absl::Status Mismatch(std::string_view field, const T& mine, int my_rank, const T& theirs,
                      int their_rank) {
  return absl::FailedPreconditionError(
      absl::StrCat("ranks disagree on the world: rank ", their_rank, " has ", std::string(field),
                   " '", theirs, "' but rank ", my_rank, " has '", mine, "'"));
}

}  // namespace

absl::Status WorldSpec::Validate() const {
  if (size < 1 || size > kMaxSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("WorldSpec size ", size, " is outside [1, ", kMaxSize, "]"));
  }
  return absl::OkStatus();
}

absl::Status WorldSpec::ValidateRank(int rank) const {
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside [0, ", size, ") for a world of size ", size));
  }
  return absl::OkStatus();
}

absl::Status CheckSameWorld(const WorldSpec& mine, int my_rank, const WorldSpec& theirs,
                            int their_rank) {
  if (theirs.size != mine.size) {
    return Mismatch("size", mine.size, my_rank, theirs.size, their_rank);
  }
  if (theirs.layout != mine.layout) {
    return Mismatch("layout", mine.layout, my_rank, theirs.layout, their_rank);
  }
  if (theirs.model != mine.model) {
    return Mismatch("model", mine.model, my_rank, theirs.model, their_rank);
  }
  if (theirs.protocol_version != mine.protocol_version) {
    return Mismatch("protocol_version", mine.protocol_version, my_rank, theirs.protocol_version,
                    their_rank);
  }
  return absl::OkStatus();
}

}  // namespace rackserve::comm
