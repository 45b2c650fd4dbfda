// Writes random Llama checkpoints: the models that tests, benchmarks and the demo run (no
// download).
//
// The directory gets config.json, model.safetensors (or shards and an index), and optionally a
// SentencePiece tokenizer.model trained on a built-in corpus; NVFP4 models also get ModelOpt's
// hf_quant_config.json. Values are seeded: the same options write the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/base/thread_pool.h"
#include "runtime/model/model_config.h"

namespace rackserve::model {

enum class CheckpointFormat {
  kBf16,   // every tensor bf16 (a plain Hugging Face checkpoint)
  kNvfp4,  // decoder linears NVFP4 in the ModelOpt layout, the rest bf16
};
absl::StatusOr<CheckpointFormat> ParseCheckpointFormat(std::string_view name);  // "bf16"|"nvfp4"

struct RandomModelOptions {
  ModelConfig config;
  uint64_t seed = 0;
  CheckpointFormat format = CheckpointFormat::kNvfp4;
  bool with_tokenizer = true;                  // train and write tokenizer.model
  int64_t max_shard_bytes = int64_t{4} << 30;  // larger checkpoints are sharded
  base::ThreadPool* pool = nullptr;  // generates tensors in parallel; nullptr: caller only
};

// Named shapes: "tiny" (unit tests), "small" (the local demo), "100m" (~100M parameters, CPU
// benchmark), and the real shapes "llama2-7b", "llama2-70b", "llama3.1-8b". NOT_FOUND listing the
// names for another name.
absl::StatusOr<ModelConfig> PresetModelConfig(std::string_view name);
std::vector<std::string> PresetModelNames();

// Writes the model into `dir` (created if missing). Files already there are replaced.
absl::Status WriteRandomModel(const std::string& dir, const RandomModelOptions& options);

}  // namespace rackserve::model
