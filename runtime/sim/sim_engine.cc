#include "runtime/sim/sim_engine.h"

#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/model_generator.h"

namespace rackserve::sim {
namespace {

absl::StatusOr<model::ModelConfig> ResolveModel(const std::string& model) {
  if (absl::StrContains(model, "/") || absl::EndsWith(model, ".json")) {
    return model::ModelConfig::FromFile(model);
  }
  return model::PresetModelConfig(model);
}

}  // namespace

absl::StatusOr<std::unique_ptr<engine::Engine>> CreateSimEngine(const SimEngineOptions& options,
                                                                SimModelRunner** runner) {
  GpuProfile profile;
  if (options.custom_profile.has_value()) {
    profile = *options.custom_profile;
  } else {
    RS_ASSIGN_OR_RETURN(profile, GpuProfileByName(options.gpu_profile));
  }
  if (!(options.speedup > 0) || !std::isfinite(options.speedup)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim speedup must be a positive finite number, got ", options.speedup));
  }
  RS_ASSIGN_OR_RETURN(model::ModelConfig config, ResolveModel(options.model));
  RS_ASSIGN_OR_RETURN(StepTimeModel time_model, StepTimeModel::Create(config, profile));
  if (options.kv_block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim kv_block_size must be >= 1, got ", options.kv_block_size));
  }
  int64_t capacity = options.kv_capacity_tokens;
  if (capacity <= 0) {
    capacity = time_model.kv_capacity_tokens();
    if (capacity < options.kv_block_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gpu profile '", profile.name, "' has no room for a KV cache: the weights of '",
          options.model, "' take ", time_model.weight_bytes(), " of ",
          static_cast<double>(profile.hbm_bytes) * profile.memory_utilization, " usable bytes"));
    }
  }
  RS_ASSIGN_OR_RETURN(
      kv::KvCacheConfig kv,
      kv::KvCacheConfig::Create(options.kv_block_size, capacity / options.kv_block_size));
  RS_ASSIGN_OR_RETURN(std::unique_ptr<SimModelRunner> sim,
                      SimModelRunner::Create(config, profile, kv, options.clock, options.speedup));
  engine::EngineOptions engine_options;
  engine_options.backend = "sim";
  engine_options.kv_block_size = options.kv_block_size;
  engine_options.kv_num_blocks = kv.num_blocks;
  engine_options.scheduler.max_running = options.max_batch;
  engine_options.scheduler.max_tokens_per_step = options.max_tokens_per_step;
  engine_options.scheduler.chunked_prefill = true;
  SimModelRunner* raw = sim.get();
  RS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                      engine::Engine::Create(std::move(sim), kv, engine_options,
                                             std::make_unique<base::ThreadPool>(1)));
  if (runner != nullptr) *runner = raw;
  return engine;
}

}  // namespace rackserve::sim
