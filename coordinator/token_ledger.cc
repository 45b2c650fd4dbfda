#include "coordinator/token_ledger.h"

#include "absl/strings/str_cat.h"

namespace rackserve::coordinator {

absl::StatusOr<std::vector<int32_t>> TokenLedger::Accept(int64_t first_index,
                                                         std::span<const int32_t> token_ids) {
  if (first_index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("first_index: ", first_index, " < 0"));
  }
  const int64_t have = static_cast<int64_t>(delivered_.size());
  if (first_index > have) {
    return absl::DataLossError(absl::StrCat("first_index: chunk starts at token ", first_index,
                                            " but only ", have, " were delivered (a gap)"));
  }
  std::vector<int32_t> fresh;
  for (size_t i = 0; i < token_ids.size(); ++i) {
    const int64_t index = first_index + static_cast<int64_t>(i);
    if (index < have) {
      if (delivered_[index] != token_ids[i]) {
        return absl::DataLossError(absl::StrCat("token_ids: token ", index, " was ",
                                                delivered_[index], ", the replica resent ",
                                                token_ids[i]));
      }
      continue;
    }
    fresh.push_back(token_ids[i]);
  }
  delivered_.insert(delivered_.end(), fresh.begin(), fresh.end());
  return fresh;
}

}  // namespace rackserve::coordinator
