// SpmToStatus: SentencePiece's status (through the bridge) as an absl::Status -- the one place
// that converts SentencePiece errors. The code is kept (both libraries use the canonical codes);
// the message is prefixed with `context`, which should name the file or directory involved.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/model/internal/sentencepiece_bridge.h"

namespace rackserve::model::internal {

inline absl::Status SpmToStatus(const SpmStatus& status, const std::string& context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.code),
                      absl::StrCat(context, ": ", status.message));
}

}  // namespace rackserve::model::internal
