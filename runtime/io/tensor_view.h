// TensorView: a read-only view of one tensor stored in a safetensors file.
//
// The view does not own its bytes: `data` points into the memory map of the SafetensorsFile
// (or Checkpoint) that produced it and is valid exactly as long as that object lives. Bytes
// are little-endian and row-major (C order) and may be unaligned for the dtype: copy them
// (std::memcpy) instead of casting the pointer. Immutable, so safe to share across threads.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/io/dtype.h"

namespace rackserve::io {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;     // empty for a scalar
  std::span<const uint8_t> data;  // exactly numel() * DTypeSize(dtype) bytes

  // Number of elements: the product of `shape` (1 for a scalar).
  int64_t numel() const {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    return n;
  }
};

}  // namespace rackserve::io
