#include "runtime/parallel/shard_plan.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::parallel {
namespace {

// INVALID_ARGUMENT unless `value` (the config field `field`) is divisible by tp.
absl::Status CheckDivisibleByTp(const char* field, int64_t value, int tp) {
  if (value % tp == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " ", value, " is not divisible by tp ", tp));
}

// INVALID_ARGUMENT unless the local input width `width` of row-parallel `linear` is a whole
// number of FP4 blocks; `how` says where the width comes from.
absl::Status CheckWholeBlocks(const char* linear, int64_t width, const std::string& how,
                              int fp4_block) {
  if (width % fp4_block == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      linear, " local input width ", width, " (", how, ") is not a multiple of the FP4 block size ",
      fp4_block, ": block scales would straddle TP ranks"));
}

}  // namespace

absl::StatusOr<std::vector<LayerRange>> SplitLayers(int64_t num_layers, int pp,
                                                    std::span<const int64_t> stage_layers) {
  if (num_layers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_layers ", num_layers, " must be at least 1"));
  }
  if (pp < 1) return absl::InvalidArgumentError(absl::StrCat("pp ", pp, " must be at least 1"));
  if (pp > num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("pp ", pp, " exceeds num_layers ", num_layers,
                                                   ": every stage needs at least one layer"));
  }
  std::vector<int64_t> counts(static_cast<size_t>(pp));
  if (stage_layers.empty()) {
    for (int s = 0; s < pp; ++s) counts[s] = num_layers / pp + (s < num_layers % pp ? 1 : 0);
  } else {
    if (stage_layers.size() != static_cast<size_t>(pp)) {
      return absl::InvalidArgumentError(absl::StrCat("stage_layers has ", stage_layers.size(),
                                                     " entries, expected one per stage (pp ", pp,
                                                     ")"));
    }
    int64_t total = 0;
    for (int s = 0; s < pp; ++s) {
      if (stage_layers[s] < 1 || stage_layers[s] > num_layers) {
        return absl::InvalidArgumentError(absl::StrCat("stage_layers[", s, "] ", stage_layers[s],
                                                       " is outside [1, num_layers ", num_layers,
                                                       "]"));
      }
      counts[s] = stage_layers[s];
      total += stage_layers[s];
    }
    if (total != num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("stage_layers sum to ", total, ", expected num_layers ", num_layers));
    }
  }
  std::vector<LayerRange> ranges(static_cast<size_t>(pp));
  int64_t begin = 0;
  for (int s = 0; s < pp; ++s) {
    ranges[s] = {begin, begin + counts[s]};
    begin += counts[s];
  }
  return ranges;
}

absl::StatusOr<ShardPlan> PlanShard(const model::ModelConfig& config, const WorldConfig& world,
                                    std::span<const int64_t> stage_layers, int fp4_block) {
  RS_RETURN_IF_ERROR(config.Validate());
  RS_ASSIGN_OR_RETURN(const WorldConfig checked,
                      WorldConfig::Create(world.tp, world.pp, world.rank));
  if (fp4_block < 1) {
    return absl::InvalidArgumentError(absl::StrCat("fp4_block ", fp4_block, " must be at least 1"));
  }
  const int tp = checked.tp;
  const int64_t kv_heads = config.num_key_value_heads;
  RS_RETURN_IF_ERROR(CheckDivisibleByTp("num_attention_heads", config.num_attention_heads, tp));
  if (kv_heads % tp != 0 && tp % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_key_value_heads ", kv_heads, " and tp ", tp,
        ": one must divide the other (kv heads are split across or replicated on TP ranks)"));
  }
  RS_RETURN_IF_ERROR(CheckDivisibleByTp("intermediate_size", config.intermediate_size, tp));
  RS_RETURN_IF_ERROR(CheckDivisibleByTp("vocab_size", config.vocab_size, tp));

  ShardPlan plan;
  plan.world = checked;
  RS_ASSIGN_OR_RETURN(const std::vector<LayerRange> stages,
                      SplitLayers(config.num_hidden_layers, checked.pp, stage_layers));
  plan.layers = stages[static_cast<size_t>(checked.stage())];

  const int64_t t = checked.tp_rank();
  plan.num_q_heads = config.num_attention_heads / tp;
  plan.q_head_begin = t * plan.num_q_heads;
  if (kv_heads % tp == 0) {
    plan.num_kv_heads = kv_heads / tp;
    plan.kv_head_begin = t * plan.num_kv_heads;
  } else {
    // The tp / kv_heads consecutive ranks that share a kv head are exactly those whose query
    // heads form its group: a group of num_attention_heads / kv_heads query heads spans
    // tp / kv_heads ranks of num_attention_heads / tp heads each.
    plan.num_kv_heads = 1;
    plan.kv_head_begin = t / (tp / kv_heads);
  }
  plan.ffn_size = config.intermediate_size / tp;
  plan.ffn_begin = t * plan.ffn_size;
  plan.vocab_size = config.vocab_size / tp;
  plan.vocab_begin = t * plan.vocab_size;

  RS_RETURN_IF_ERROR(CheckWholeBlocks(
      "o_proj", plan.num_q_heads * config.head_dim,
      absl::StrCat(plan.num_q_heads, " local query heads x head_dim ", config.head_dim),
      fp4_block));
  RS_RETURN_IF_ERROR(CheckWholeBlocks(
      "down_proj", plan.ffn_size,
      absl::StrCat("intermediate_size ", config.intermediate_size, " / tp ", tp), fp4_block));
  return plan;
}

}  // namespace rackserve::parallel
