// CreateSimEngine: an engine whose device is a simulated GPU (SimModelRunner) — the real
// scheduler, KV accounting, batching and stop conditions over a roofline time model. What
// `rackserve-worker --backend sim --gpu-profile NAME` runs.
//
// The KV cache is sized from the profile: (HBM * memory_utilization - weights) at FP8, in blocks
// of kv_block_size positions. Nothing is loaded: the model is only its config.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/engine/engine.h"
#include "runtime/sim/sim_model_runner.h"

namespace rackserve::sim {

struct SimEngineOptions {
  std::string gpu_profile = "gb300";         // a GpuProfileByName name
  std::optional<GpuProfile> custom_profile;  // used instead of gpu_profile when set
  // Every modeled step takes 1 / speedup of its time (2: a GPU twice as fast, for headroom tests).
  double speedup = 1.0;
  // A model::PresetModelConfig name ("llama2-70b"), or a path to a Hugging Face config.json
  // (anything containing '/' or ending in ".json").
  std::string model = "llama2-70b";
  ClockMode clock = ClockMode::kRealTime;
  // Most sequences in the running batch: 2,048, as the fastest Blackwell submitters run
  // (DESIGN.md).
  int max_batch = 2048;
  // Token budget per step (prefill + decode). An assumption, not a record's setting: large enough
  // that a full 2,048-sequence decode batch still leaves room for prefill.
  int64_t max_tokens_per_step = 8192;
  int kv_block_size = 32;          // tokens per KV block
  int64_t kv_capacity_tokens = 0;  // > 0 overrides the profile-derived KV capacity
};

// The engine, and (when `runner` is not null) a pointer to its runner, owned by the engine and
// valid while it lives. NOT_FOUND for an unknown profile, preset or config file;
// INVALID_ARGUMENT naming the option for a bad value (speedup not positive, a custom profile
// failing Validate), or when the weights leave no room for KV.
absl::StatusOr<std::unique_ptr<engine::Engine>> CreateSimEngine(const SimEngineOptions& options,
                                                                SimModelRunner** runner = nullptr);

}  // namespace rackserve::sim
