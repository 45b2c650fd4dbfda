// DType: the element types of safetensors tensors that rackserve reads and writes.
//
// Names are the safetensors spellings ("F32", "BF16", "F8_E4M3", "U8", "BOOL", ...). Element
// bytes are little-endian, as safetensors stores them. All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"

namespace rackserve::io {

enum class DType { kF64, kF32, kF16, kBF16, kF8E4M3, kI64, kI32, kI16, kI8, kU8, kBool };

// The safetensors spelling of `dtype`, e.g. "F8_E4M3".
std::string_view DTypeName(DType dtype);

// Parses a safetensors dtype name (exact, case-sensitive); INVALID_ARGUMENT naming the name
// when rackserve does not support it (e.g. "U16", "F8_E5M2").
absl::StatusOr<DType> ParseDType(std::string_view name);

// Bytes per element: 8, 4, 2, 1 (BOOL is one byte).
int64_t DTypeSize(DType dtype);

// Bytes of a dense tensor of `shape`: numel * DTypeSize (numel of an empty shape is 1).
// nullopt when a dimension is negative or the size does not fit in int64.
std::optional<int64_t> TensorByteSize(DType dtype, std::span<const int64_t> shape);

// True for F32, F16 and BF16: the dtypes Checkpoint::ReadFloat converts to float.
bool IsFloatDType(DType dtype);

}  // namespace rackserve::io
