// The NVIDIA ModelOpt NVFP4 checkpoint layout of one linear layer, read and written here only.
//
// For a module `<m>` (e.g. "model.layers.0.self_attn.q_proj") with weight [out, in]:
//   <m>.weight          U8      [out, in / 2]   E2M1 codes, element 2j in the low nibble of byte j
//   <m>.weight_scale    F8_E4M3 [out, in / 16]  block scales along the input dimension
//   <m>.weight_scale_2  F32     [] (or [1])     per-tensor scale
// w[r][c] = e2m1 * weight_scale[r][c / 16] * weight_scale_2 (numerics::Fp4Matrix, kNvfp4).
// `<m>.input_scale` (activation scale for W4A4 runtimes) may be present and is not used.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/safetensors_writer.h"
#include "runtime/numerics/fp4_matrix.h"

namespace rackserve::model {

// OK unless `dir`/hf_quant_config.json names a pre-quantized format rackserve cannot load (it
// loads NVFP4 with 16-element groups); INVALID_ARGUMENT naming the file and the value otherwise.
absl::Status CheckSupportedQuantConfig(const std::string& dir);

// The three tensors of the NVFP4 linear `module` of logical shape [rows, cols], checked (dtype,
// shape, scalar scale) and left in place: views into the mapped checkpoint, valid while it lives.
struct Nvfp4LinearView {
  std::span<const uint8_t> packed;  // [rows, cols / 2]
  std::span<const uint8_t> scales;  // [rows, cols / 16]
  float tensor_scale = 1.0f;
};
// INVALID_ARGUMENT naming the file and tensor for a wrong dtype or shape; NOT_FOUND for a missing
// tensor.
absl::StatusOr<Nvfp4LinearView> FindNvfp4Linear(const io::Checkpoint& checkpoint,
                                                const std::string& module, int64_t rows,
                                                int64_t cols);

// True when the checkpoint stores `<module>.weight` packed as NVFP4 (U8 with a weight_scale).
bool IsNvfp4Linear(const io::Checkpoint& checkpoint, const std::string& module);

// Reads the NVFP4 linear `module` of logical shape [rows, cols]. INVALID_ARGUMENT naming the file
// and tensor for a wrong dtype or shape; NOT_FOUND for a missing tensor.
absl::StatusOr<numerics::Fp4Matrix> ReadNvfp4Linear(const io::Checkpoint& checkpoint,
                                                    const std::string& module, int64_t rows,
                                                    int64_t cols);

// Adds the three tensors of an NVFP4 matrix under `module`. Precondition: m.format is kNvfp4.
absl::Status AddNvfp4Linear(io::SafetensorsWriter& writer, const std::string& module,
                            const numerics::Fp4Matrix& m);

}  // namespace rackserve::model
