// FileRendezvous: a Rendezvous through a shared directory, for tests and single-machine (or
// shared-file-system) launches.
//
// Each rank writes <dir>/rank-<r> atomically (a temp file hard-linked into place, so a record is
// either absent or complete, and a second publication of the same rank fails) holding its
// WorldSpec and base64 blob as JSON, then polls for the others' records, checking each against
// its own WorldSpec as soon as it appears. The directory must exist and serves one group once
// (the launcher makes a fresh one per group); records are left in place.
//
// Stateless apart from the path: Exchange may run concurrently on several threads (one per
// rank). Errors name the directory or the record's path, besides what Rendezvous lists:
// NOT_FOUND when the directory does not exist.
#pragma once

#include <memory>
#include <string>

#include "runtime/comm/rendezvous.h"

namespace rackserve::comm {

std::unique_ptr<Rendezvous> MakeFileRendezvous(std::string dir);

}  // namespace rackserve::comm
