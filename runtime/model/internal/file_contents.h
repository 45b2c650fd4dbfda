// Whole-file I/O for small files (configuration files, tokenizer models). Every message names
// the path. Thread-safe (concurrent writes to the same path race).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rackserve::model::internal {

// The bytes of the file at `path`. NOT_FOUND when it does not exist, INVALID_ARGUMENT when it is
// not a regular file, PERMISSION_DENIED when it cannot be opened, DATA_LOSS when reading fails
// part way.
absl::StatusOr<std::string> ReadFileContents(const std::string& path);

// Creates or replaces the file at `path` with `bytes`. PERMISSION_DENIED when it cannot be
// opened for writing, RESOURCE_EXHAUSTED when writing fails (e.g. the disk is full).
absl::Status WriteFileContents(const std::string& path, std::string_view bytes);

}  // namespace rackserve::model::internal
