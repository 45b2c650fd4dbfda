// WorldConfig: the rank arithmetic of one model replica, TP x PP ranks (processes).
//
// Ranks are numbered stage-major: rank r is pipeline stage r / tp and tensor-parallel rank r % tp,
// so the TP group of a stage is the contiguous ranks [stage * tp, (stage + 1) * tp). A validated
// value type (build it with Create); all methods are const and thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace rackserve::parallel {

struct WorldConfig {
  int tp = 1;    // tensor-parallel ranks per pipeline stage; >= 1
  int pp = 1;    // pipeline stages; >= 1
  int rank = 0;  // this process's rank in [0, tp * pp)

  // INVALID_ARGUMENT naming the field when tp or pp is below 1, tp * pp does not fit an int, or
  // rank lies outside [0, tp * pp).
  static absl::StatusOr<WorldConfig> Create(int tp, int pp, int rank);

  int size() const { return tp * pp; }
  int stage() const { return rank / tp; }
  int tp_rank() const { return rank % tp; }
  bool first_stage() const { return stage() == 0; }
  bool last_stage() const { return stage() == pp - 1; }
  // The rank of TP rank `tp_rank` in pipeline stage `stage`.
  int RankOf(int stage, int tp_rank) const { return stage * tp + tp_rank; }
  // "tp<tp>-pp<pp>", e.g. "tp2-pp2".
  std::string Layout() const;

  bool operator==(const WorldConfig&) const = default;
};

}  // namespace rackserve::parallel
