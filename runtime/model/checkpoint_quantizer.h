// Quantizes a Hugging Face Llama checkpoint (bf16/fp16/fp32) into an NVFP4 checkpoint in NVIDIA
// ModelOpt's layout (modelopt_nvfp4.h), so that rackserve and other runtimes can load it.
//
// Decoder linear weights (model.layers.<i>.{self_attn,mlp}.*_proj.weight) become NVFP4; every
// other tensor is copied unchanged (embedding, norms, lm_head stay in their dtype, as ModelOpt
// excludes lm_head). Other files of the input directory (config.json, tokenizer files, ...) are
// copied; hf_quant_config.json is written. A linear already in NVFP4 is an error (nothing to do).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/base/thread_pool.h"

namespace rackserve::model {

struct QuantizationReport {
  int64_t tensors_quantized = 0;
  int64_t tensors_copied = 0;
  int64_t bytes_in = 0;   // tensor data read
  int64_t bytes_out = 0;  // tensor data written
  // Normalized error ||w - dequant(quant(w))|| / ||w|| over quantized tensors.
  double mean_error = 0;
  double max_error = 0;
  std::string worst_tensor;
};

struct QuantizeOptions {
  int64_t max_shard_bytes = int64_t{4} << 30;
  base::ThreadPool* pool = nullptr;  // quantizes tensors in parallel; nullptr: caller only
  // Called after each tensor with (done, total); from any thread, one call at a time.
  std::function<void(int64_t, int64_t)> progress;
};

// Reads `in_dir`, writes `out_dir` (created; must differ from in_dir). Errors name the file and
// tensor (NOT_FOUND, INVALID_ARGUMENT, DATA_LOSS as io::Checkpoint reports them).
absl::StatusOr<QuantizationReport> QuantizeCheckpoint(const std::string& in_dir,
                                                      const std::string& out_dir,
                                                      const QuantizeOptions& options);

}  // namespace rackserve::model
